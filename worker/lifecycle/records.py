"""What the monitor reads: predictions (output and shadow topics) and labels (labels topic).

Pure decoding, record by record, with the same JSON checks as feature events: a record that
cannot be joined comes back as a reject with a reason code, to be counted and logged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from worker.stream.events import EventRejected, event_id_of, parse_event


class LabelReason:
    """Why a record of the labels, output or shadow topic could not be joined."""

    INVALID_JSON = "invalid_json"  # also: not UTF-8, not an object, too large
    MISSING_EVENT_ID = "missing_event_id"  # also: an event_id that is neither text nor integer
    INVALID_LABEL = "invalid_label"  # absent, not a number, not finite
    INVALID_PREDICTION = "invalid_prediction"  # no model_version, arm or finite score

    @classmethod
    def codes(cls) -> list[str]:
        return [value for name, value in vars(cls).items() if name.isupper()]


ARMS = ("primary", "canary", "shadow")


@dataclass(frozen=True)
class Prediction:
    event_id: str
    version: str
    arm: str
    score: float


@dataclass(frozen=True)
class Label:
    event_id: str
    label: float


@dataclass(frozen=True)
class Rejected:
    topic: str
    partition: int
    offset: int
    reason: str
    detail: str


@dataclass
class Joinable:
    """One polled batch, decoded."""

    predictions: list[Prediction] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    rejects: list[Rejected] = field(default_factory=list)


@dataclass(frozen=True)
class SourceRecord:
    topic: str
    partition: int
    offset: int
    value: bytes | None


def decode_records(records: Iterable[SourceRecord], labels_topic: str, max_bytes: int) -> Joinable:
    """Labels from `labels_topic`, predictions from any other topic."""
    batch = Joinable()
    for record in records:
        try:
            if record.topic == labels_topic:
                batch.labels.append(decode_label(record.value, max_bytes))
            else:
                batch.predictions.append(decode_prediction(record.value, max_bytes))
        except EventRejected as exc:
            batch.rejects.append(
                Rejected(record.topic, record.partition, record.offset, exc.reason, exc.detail)
            )
    return batch


def decode_label(value: bytes | None, max_bytes: int) -> Label:
    """`{"event_id": "e-1", "label": 1, "ts": ...}`: a finite number (true/false count as 1/0)."""
    message = _parse(value, max_bytes)
    label = message.get("label")
    if not isinstance(label, int | float) or not math.isfinite(label):
        raise EventRejected(
            LabelReason.INVALID_LABEL, f"label must be a finite number, got {label!r}"
        )
    return Label(_event_id(message), float(label))


def decode_prediction(value: bytes | None, max_bytes: int) -> Prediction:
    """A worker's prediction record; `arm` defaults to primary (records before canaries)."""
    message = _parse(value, max_bytes)
    version, arm, score = (
        message.get("model_version"),
        message.get("arm", "primary"),
        (message.get("score")),
    )
    if (
        not isinstance(version, str)
        or not version
        or any(c.isspace() for c in version)  # as the registry refuses: \x1f is the join's SEP
        or arm not in ARMS
        or isinstance(score, bool)
        or not isinstance(score, int | float)
        or not math.isfinite(score)
    ):
        raise EventRejected(
            LabelReason.INVALID_PREDICTION,
            f"prediction needs model_version, arm and a finite score, got "
            f"model_version={version!r} arm={arm!r} score={score!r}",
        )
    return Prediction(_event_id(message), version, str(arm), float(score))


def _parse(value: bytes | None, max_bytes: int) -> dict[str, object]:
    try:
        return parse_event(value, max_bytes)
    except EventRejected as exc:
        raise EventRejected(LabelReason.INVALID_JSON, exc.detail) from None


def _event_id(message: dict[str, object]) -> str:
    """As text: the join key (an integer id 7 and the text "7" are the same event)."""
    try:
        return str(event_id_of(message))
    except EventRejected as exc:
        raise EventRejected(LabelReason.MISSING_EVENT_ID, exc.detail) from None
