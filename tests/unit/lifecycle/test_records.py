"""Decoding what the monitor reads: labels and predictions, or a reject with its reason code."""

from __future__ import annotations

import orjson
import pytest

from worker.lifecycle.records import (
    FeatureRow,
    Label,
    LabelReason,
    Prediction,
    Rejected,
    SourceRecord,
    decode_label,
    decode_prediction,
    decode_records,
    decode_training,
    sampled,
)
from worker.stream.events import EventRejected

MAX_BYTES = 10_000


def _json(**fields: object) -> bytes:
    return orjson.dumps(fields)


def _reason_of_label(value: bytes | None) -> str:
    with pytest.raises(EventRejected) as rejected:
        decode_label(value, MAX_BYTES)
    return rejected.value.reason


def _reason_of_prediction(value: bytes | None) -> str:
    with pytest.raises(EventRejected) as rejected:
        decode_prediction(value, MAX_BYTES)
    return rejected.value.reason


@pytest.mark.parametrize(
    ("event_id", "label", "expected"),
    [
        ("e-1", 1, Label("e-1", 1.0)),
        (7, 0, Label("7", 0.0)),
        ("e-2", True, Label("e-2", 1.0)),
        ("e-3", False, Label("e-3", 0.0)),
        ("e-4", 0.25, Label("e-4", 0.25)),
        ("odd id: ü", 1, Label("odd id: ü", 1.0)),
    ],
)
def test_a_label_decodes_with_its_event_id_as_text_and_booleans_as_numbers(
    event_id: object, label: object, expected: Label
) -> None:
    assert decode_label(_json(event_id=event_id, label=label, ts=1.5), MAX_BYTES) == expected


def test_a_prediction_decodes_with_its_version_arm_and_score() -> None:
    value = _json(event_id=42, model_version="v2", arm="canary", score=0.75, scored_at=1.0)
    assert decode_prediction(value, MAX_BYTES) == Prediction("42", "v2", "canary", 0.75)


def test_a_prediction_without_an_arm_is_the_primarys() -> None:
    value = _json(event_id="e-1", model_version="v1", score=1)
    assert decode_prediction(value, MAX_BYTES) == Prediction("e-1", "v1", "primary", 1.0)


@pytest.mark.parametrize("arm", ["primary", "canary", "shadow"])
def test_every_arm_decodes(arm: str) -> None:
    value = _json(event_id="e-1", model_version="v1", arm=arm, score=0.5)
    assert decode_prediction(value, MAX_BYTES).arm == arm


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"{not json", id="bad-json"),
        pytest.param(b'{"event_id": "\xff", "label": 1}', id="not-utf8"),
        pytest.param(b"[1, 2]", id="not-an-object"),
        pytest.param(b'"text"', id="a-string"),
        pytest.param(None, id="tombstone"),
        pytest.param(b'{"event_id": "e", "label": 1, "p": "' + b"x" * MAX_BYTES + b'"}', id="big"),
    ],
)
def test_an_unreadable_record_is_invalid_json_for_labels_and_predictions(
    value: bytes | None,
) -> None:
    assert _reason_of_label(value) == LabelReason.INVALID_JSON
    assert _reason_of_prediction(value) == LabelReason.INVALID_JSON


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="absent"),
        pytest.param({"event_id": ""}, id="empty"),
        pytest.param({"event_id": None}, id="null"),
        pytest.param({"event_id": True}, id="bool"),
        pytest.param({"event_id": 1.5}, id="float"),
        pytest.param({"event_id": ["e"]}, id="list"),
    ],
)
def test_a_record_without_a_usable_event_id_is_missing_event_id(fields: dict[str, object]) -> None:
    assert _reason_of_label(_json(label=1, **fields)) == LabelReason.MISSING_EVENT_ID
    prediction = _json(model_version="v1", score=0.5, **fields)
    assert _reason_of_prediction(prediction) == LabelReason.MISSING_EVENT_ID


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b'{"event_id": "e"}', id="absent"),
        pytest.param(b'{"event_id": "e", "label": null}', id="null"),
        pytest.param(b'{"event_id": "e", "label": "1"}', id="string"),
        pytest.param(b'{"event_id": "e", "label": [1]}', id="list"),
        pytest.param(b'{"event_id": "e", "label": NaN}', id="nan"),
        pytest.param(b'{"event_id": "e", "label": Infinity}', id="inf"),
        pytest.param(b'{"event_id": "e", "label": -1e999}', id="overflow"),
    ],
)
def test_a_label_that_is_not_a_finite_number_is_invalid_label(value: bytes) -> None:
    assert _reason_of_label(value) == LabelReason.INVALID_LABEL


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b'{"event_id": "e", "score": 0.5}', id="no-version"),
        pytest.param(b'{"event_id": "e", "model_version": "", "score": 0.5}', id="empty-version"),
        pytest.param(b'{"event_id": "e", "model_version": 3, "score": 0.5}', id="int-version"),
        pytest.param(
            b'{"event_id": "e", "model_version": "v\\u001f1", "score": 0.5}', id="sep-in-version"
        ),
        pytest.param(
            b'{"event_id": "e", "model_version": "v 1", "score": 0.5}', id="space-in-version"
        ),
        pytest.param(
            b'{"event_id": "e", "model_version": "v1", "arm": "blue", "score": 0.5}', id="bad-arm"
        ),
        pytest.param(
            b'{"event_id": "e", "model_version": "v1", "arm": null, "score": 0.5}', id="null-arm"
        ),
        pytest.param(
            b'{"event_id": "e", "model_version": "v1", "arm": ["canary"], "score": 0.5}',
            id="list-arm",
        ),
        pytest.param(b'{"event_id": "e", "model_version": "v1"}', id="no-score"),
        pytest.param(b'{"event_id": "e", "model_version": "v1", "score": true}', id="bool-score"),
        pytest.param(b'{"event_id": "e", "model_version": "v1", "score": "0.5"}', id="str-score"),
        pytest.param(b'{"event_id": "e", "model_version": "v1", "score": null}', id="null-score"),
        pytest.param(b'{"event_id": "e", "model_version": "v1", "score": NaN}', id="nan-score"),
        pytest.param(
            b'{"event_id": "e", "model_version": "v1", "score": -Infinity}', id="inf-score"
        ),
    ],
)
def test_a_prediction_without_version_arm_or_finite_score_is_invalid_prediction(
    value: bytes,
) -> None:
    assert _reason_of_prediction(value) == LabelReason.INVALID_PREDICTION


def test_every_reason_code_is_listed() -> None:
    assert sorted(LabelReason.codes()) == [
        "invalid_features",
        "invalid_json",
        "invalid_label",
        "invalid_prediction",
        "invalid_ts",
        "missing_event_id",
    ]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"event_id": "e-1", "ts": 5}', "invalid_features"),
        (b'{"event_id": "e-1", "features": {}}', "invalid_features"),
        (b'{"event_id": "e-1", "features": [1, 2]}', "invalid_features"),
        (b'{"event_id": "e-1", "ts": "noon", "features": {"f0": 1}}', "invalid_ts"),
        (b'{"ts": 5, "features": {"f0": 1}}', "missing_event_id"),
        (b"\xff", "invalid_json"),
    ],
)
def test_a_feature_event_that_cannot_train_is_rejected_with_its_reason(
    value: bytes, reason: str
) -> None:
    batch = decode_training(
        [SourceRecord("features", 0, 9, value)], labels_topic="labels", max_bytes=MAX_BYTES
    )
    assert batch.halves == []
    assert [(r.offset, r.reason) for r in batch.rejects] == [(9, reason)]


def test_a_deeply_nested_feature_is_kept_unusable_not_fatal() -> None:
    """orjson reads nesting it cannot write back (over 254 levels): such a value is no
    feature a fit can use, kept as one no kind takes, and the event keeps its other ones."""
    deep = b"[" * 300 + b"]" * 300
    value = b'{"event_id": "e-1", "ts": 3, "features": {"f0": 1.5, "f1": ' + deep + b"}}"
    batch = decode_training([SourceRecord("features", 0, 1, value)], "labels", MAX_BYTES)
    assert batch.halves == [FeatureRow("e-1", 3.0, '{"f0":1.5,"f1":{}}')] and batch.rejects == []


def test_a_feature_event_keeps_its_numbers_texts_and_nulls_and_its_time() -> None:
    """What a version with category features and missing values trains on; a list, an
    object or a non-finite number is kept as a value no kind takes (never as missing), a
    boolean as it is (the worker refuses it for either kind)."""
    records = [
        SourceRecord(
            "features",
            0,
            1,
            b'{"event_id": 7, "ts": 12.5, "features": {"b": 1, "a": 0, "c": "x", "d": null, '
            b'"e": [1], "f": true}}',
        ),
        SourceRecord("features", 0, 2, b'{"event_id": "e", "features": {"a": 2}}', 4_000),
        SourceRecord("labels", 0, 3, b'{"event_id": "e", "label": 1}'),
    ]
    batch = decode_training(records, labels_topic="labels", max_bytes=MAX_BYTES)
    assert batch.halves == [
        FeatureRow("7", 12.5, '{"b":1,"a":0,"c":"x","d":null,"e":{},"f":true}'),
        FeatureRow("e", 4.0, '{"a":2}'),  # no ts: the broker's timestamp
    ]
    assert batch.labels == [Label("e", 1.0)]


def test_records_split_into_labels_from_the_labels_topic_and_predictions_from_the_others() -> None:
    records = [
        SourceRecord("labels", 0, 10, _json(event_id="e-1", label=1)),
        SourceRecord("out", 1, 20, _json(event_id="e-1", model_version="v1", score=0.5)),
        SourceRecord("shadow", 2, 30, _json(event_id=2, model_version="v2", arm="shadow", score=0)),
        SourceRecord("labels", 0, 11, _json(event_id="e-2", label="yes")),
        SourceRecord("out", 1, 21, None),
        # a label-shaped record on a prediction topic is judged as a prediction
        SourceRecord("out", 1, 22, _json(event_id="e-3", label=0)),
    ]
    batch = decode_records(records, labels_topic="labels", max_bytes=MAX_BYTES)
    assert batch.labels == [Label("e-1", 1.0)]
    assert batch.halves == [
        Prediction("e-1", "v1", "primary", 0.5),
        Prediction("2", "v2", "shadow", 0.0),
    ]
    assert [(r.topic, r.partition, r.offset, r.reason) for r in batch.rejects] == [
        ("labels", 0, 11, LabelReason.INVALID_LABEL),
        ("out", 1, 21, LabelReason.INVALID_JSON),
        ("out", 1, 22, LabelReason.INVALID_PREDICTION),
    ]
    assert all(isinstance(r, Rejected) and r.detail for r in batch.rejects)


def test_no_records_decode_to_an_empty_batch() -> None:
    batch = decode_records([], labels_topic="labels", max_bytes=MAX_BYTES)
    assert (batch.labels, batch.halves, batch.rejects) == ([], [], [])


def test_a_sample_keeps_about_its_share_and_always_the_same_events() -> None:
    ids = [f"e-{i}" for i in range(20_000)]
    kept = [e for e in ids if sampled(e, 10.0)]
    assert 1800 < len(kept) < 2200
    assert kept == [e for e in ids if sampled(e, 10.0)]
    assert all(sampled(e, 100.0) for e in ids[:100])
    assert set(kept) <= {e for e in ids if sampled(e, 50.0)}


def test_registry_records_train_as_the_json_events_they_carry() -> None:
    """input_format avro: the retrainer reads the input topic as the workers do; a broken
    record keeps its own reason."""
    from tests.unit.stream.test_registry_records import SCHEMAS, Held, encoded
    from worker.stream.records import RegistryEvents
    from worker.stream.wire import framed

    reader = RegistryEvents(Held(SCHEMAS))
    values = [
        encoded(3, {"event_id": "m", "features": {"a": 5.0, "b": None}}),
        framed(99, b"\x02m"),
    ]
    reader.prepare(values)
    records = [SourceRecord("features", 0, i, value, 2_000) for i, value in enumerate(values)]

    batch = decode_training(records, "labels", MAX_BYTES, reader)

    assert batch.halves == [FeatureRow("m", 2.0, '{"a":5.0,"b":null}')]
    assert [(r.offset, r.reason) for r in batch.rejects] == [(1, "unknown_schema")]


def test_a_retrainer_that_cannot_reach_the_registry_reads_the_batch_again() -> None:
    """Its apply says the batch was not taken (the join loop rewinds and backs off), before
    anything is decoded, so no event is counted malformed for the outage."""
    from worker.lifecycle.retrainer import Retrainer
    from worker.settings import Settings
    from worker.stream.wire import framed

    retrainer = Retrainer(
        Settings(input_format="avro", schema_registry_url="http://127.0.0.1:9/apis/ccompat/v7")
    )
    record = SourceRecord("ad-click-features", 0, 1, framed(1, b"\x02m"))

    assert retrainer._apply(None, [record]) is False  # type: ignore[arg-type]
    malformed = [
        sample.value
        for family in retrainer.metrics.registry.collect()
        if family.name == "scorer_retrain_malformed"
        for sample in family.samples
        if sample.name.endswith("_total")
    ]
    assert sum(malformed) == 0
