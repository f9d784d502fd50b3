"""What the monitor and the retrainer read: labels (labels topic) and the other half of each
event, predictions (output and shadow topics) for the monitor, feature events (input topic) for
the retrainer.

Pure decoding, record by record, with the same JSON checks as the workers': a record that
cannot be joined comes back as a reject with a reason code, to be counted and logged.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import orjson

from worker.stream.events import (
    JSON_EVENTS,
    EventReader,
    EventRejected,
    event_id_of,
    event_ts_of,
    parse_event,
)

T = TypeVar("T")


class LabelReason:
    """Why a record of the labels, output, shadow or input topic could not be joined."""

    INVALID_JSON = "invalid_json"  # also: not UTF-8, not an object, too large
    MISSING_EVENT_ID = "missing_event_id"  # also: an event_id that is neither text nor integer
    INVALID_LABEL = "invalid_label"  # absent, not a number, not finite
    INVALID_PREDICTION = "invalid_prediction"  # no model_version, arm or finite score
    INVALID_FEATURES = "invalid_features"  # a feature event without a usable feature
    INVALID_TS = "invalid_ts"  # a feature event whose ts is not epoch seconds

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


@dataclass(frozen=True)
class FeatureRow:
    """A feature event as the retrainer keeps it until its label comes."""

    event_id: str
    ts: float  # the event's ts, else when the broker took it
    features: str  # its features object, as JSON


@dataclass
class Joinable(Generic[T]):
    """One polled batch, decoded: labels, and the other halves of events."""

    halves: list[T] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    rejects: list[Rejected] = field(default_factory=list)


@dataclass(frozen=True)
class SourceRecord:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp_ms: int = 0  # the broker's (or producer's) timestamp


def decode_records(
    records: Iterable[SourceRecord], labels_topic: str, max_bytes: int
) -> Joinable[Prediction]:
    """Labels from `labels_topic`, predictions from any other topic."""
    return decode_joinable(
        records, labels_topic, lambda r: decode_prediction(r.value, max_bytes), max_bytes
    )


def decode_training(
    records: Iterable[SourceRecord],
    labels_topic: str,
    max_bytes: int,
    reader: EventReader = JSON_EVENTS,
) -> Joinable[FeatureRow]:
    """Labels from `labels_topic`, feature events from any other topic, read as the workers
    read them (`reader`: JSON, or schema-registry records whose schemas it holds)."""
    return decode_joinable(
        records, labels_topic, lambda r: decode_features(r, max_bytes, reader), max_bytes
    )


def decode_joinable(
    records: Iterable[SourceRecord],
    labels_topic: str,
    decode_half: Callable[[SourceRecord], T],
    max_bytes: int,
) -> Joinable[T]:
    batch: Joinable[T] = Joinable()
    for record in records:
        try:
            if record.topic == labels_topic:
                batch.labels.append(decode_label(record.value, max_bytes))
            else:
                batch.halves.append(decode_half(record))
        except EventRejected as exc:
            batch.rejects.append(
                Rejected(record.topic, record.partition, record.offset, exc.reason, exc.detail)
            )
    return batch


def sampled(event_id: str, percent: float) -> bool:
    """Whether an event is in a `percent` % sample: a stable hash of its id (CRC-32), so its
    label and its features are kept or left together, by every process."""
    return percent >= 100 or zlib.crc32(event_id.encode()) % 10_000 < percent * 100


def decode_features(
    record: SourceRecord, max_bytes: int, reader: EventReader = JSON_EVENTS
) -> FeatureRow:
    """A feature event's features, all of them: which a fit uses, and as which kind, is the
    model's to say then, with the worker's own checks (a row lacking one, or holding one a
    worker would dead-letter, is left out then, and counted). A value no worker scores (a
    list, an object, a number that is not finite) is kept as UNUSABLE, never as missing, and
    takes no room. A registry record's faults keep their own reasons (unknown_schema, ...)."""
    if reader is JSON_EVENTS:
        message = _parse(record.value, max_bytes)
    else:
        message = reader.checked(record.value, max_bytes)
    features = message.get("features")
    if not isinstance(features, dict):
        raise EventRejected(LabelReason.INVALID_FEATURES, "event has no features object")
    numbers = {k: v if _kept(v) else UNUSABLE for k, v in features.items()}
    if not numbers:
        raise EventRejected(LabelReason.INVALID_FEATURES, "event has no feature")
    try:
        ts = event_ts_of(message)
    except EventRejected as exc:
        raise EventRejected(LabelReason.INVALID_TS, exc.detail) from None
    when = ts if ts is not None else record.timestamp_ms / 1000
    return FeatureRow(_event_id(message), when, orjson.dumps(numbers).decode())


UNUSABLE: dict[str, object] = {}  # stands for a value no fit may use: no kind takes an object


def _kept(value: object) -> bool:
    kind = type(value)
    if kind is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    return kind in (int, str, bool, type(None))


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
