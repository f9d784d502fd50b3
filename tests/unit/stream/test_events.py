"""Decoding and encoding: pure functions, checked on examples and on random, hostile input."""

from __future__ import annotations

import json
import math
from typing import cast

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.models.features import FeatureSchema
from worker.stream.events import (
    EventRejected,
    Limits,
    Reason,
    decode_batch,
    decode_event,
    encode_predictions,
)

FEATURES = ("f0", "f1", "f2")
LIMIT = 10_000
SCHEMA = FeatureSchema.numbers(FEATURES)
LIMITS = Limits(LIMIT)


def event(event_id: object = "e-1", **features: object) -> bytes:
    return orjson.dumps({"event_id": event_id, "ts": 1.5, "features": features})


GOOD = event(f0=0.5, f1=2, f2=-1.25)


def reason_of(value: bytes | None) -> str:
    batch = decode_batch([value], SCHEMA, LIMITS)
    assert len(batch.rejects) == 1 and not batch.accepted
    return batch.rejects[0].reason


def test_good_event_becomes_a_row_in_model_feature_order() -> None:
    value = orjson.dumps(
        {
            "event_id": "e-1",
            "ts": 1.5,
            "features": {"f2": 3.0, "extra": "ignored", "f0": 1.0, "f1": 2},
        }
    )
    batch = decode_batch([value], SCHEMA, LIMITS)
    assert batch.rejects == []
    assert batch.matrix.tolist() == [[1.0, 2.0, 3.0]]
    assert batch.event_ids == ["e-1"] and batch.event_ts == [1.5]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfe{}", Reason.INVALID_UTF8),
        (b'{"event_id": "\xed\xa0\x80", "features": {}}', Reason.INVALID_UTF8),
        (b'{"event_id": "e-1", "features": {', Reason.INVALID_JSON),
        (b"", Reason.INVALID_JSON),
        (b"[1, 2]", Reason.NOT_AN_OBJECT),
        (b'"text"', Reason.NOT_AN_OBJECT),
        (None, Reason.NOT_AN_OBJECT),
        (orjson.dumps({"features": {"f0": 1, "f1": 1, "f2": 1}}), Reason.MISSING_EVENT_ID),
        (event(event_id=""), Reason.INVALID_EVENT_ID),
        (event(event_id=True), Reason.INVALID_EVENT_ID),
        (event(event_id=[1]), Reason.INVALID_EVENT_ID),
        (orjson.dumps({"event_id": "e", "ts": "noon", "features": {}}), Reason.INVALID_TS),
        (orjson.dumps({"event_id": "e"}), Reason.MISSING_FEATURES),
        (orjson.dumps({"event_id": "e", "features": [1, 2, 3]}), Reason.MISSING_FEATURES),
        (event(f0=1.0, f1=2.0), Reason.MISSING_FEATURE),
        (event(f0=1.0, f1="2", f2=3.0), Reason.NON_NUMERIC_FEATURE),
        (event(f0=1.0, f1=None, f2=3.0), Reason.MISSING_FEATURE),  # null is missing
        (event(f0=1.0, f1=True, f2=3.0), Reason.NON_NUMERIC_FEATURE),
        (
            b'{"event_id": "e", "features": {"f0": NaN, "f1": 1, "f2": 1}}',
            Reason.NON_FINITE_FEATURE,
        ),
        (
            b'{"event_id": "e", "features": {"f0": 1, "f1": -Infinity, "f2": 1}}',
            Reason.NON_FINITE_FEATURE,
        ),
        (
            b'{"event_id": "e", "features": {"f0": 1, "f1": 1e999, "f2": 1}}',
            Reason.NON_FINITE_FEATURE,
        ),
        (
            b'{"event_id": "e", "features": {"f0": 1, "f1": 1, "f2": ' + b"9" * 400 + b"}}",
            Reason.NON_FINITE_FEATURE,
        ),
        (b"[" * 5000, Reason.INVALID_JSON),  # deeper than either parser recurses
        (b'{"event_id": "e", "pad": "' + b"x" * LIMIT + b'"}', Reason.TOO_LARGE),
    ],
)
def test_each_kind_of_bad_event_gets_its_specific_reason(value: bytes | None, reason: str) -> None:
    assert reason_of(value) == reason


def test_python_json_output_with_nan_is_rejected_for_the_feature_not_the_syntax() -> None:
    value = json.dumps({"event_id": "e", "features": {"f0": math.nan, "f1": 1, "f2": 1}}).encode()
    batch = decode_batch([value], SCHEMA, LIMITS)
    assert batch.rejects[0].reason == Reason.NON_FINITE_FEATURE
    assert "'f0'" in batch.rejects[0].detail


def test_rejects_keep_their_batch_positions_and_the_rest_is_scored() -> None:
    nan = b'{"event_id": "n", "features": {"f0": NaN, "f1": 1, "f2": 1}}'
    batch = decode_batch([GOOD, b"junk", nan, GOOD], SCHEMA, LIMITS)
    assert batch.accepted == [0, 3]
    assert sorted((r.index, r.reason) for r in batch.rejects) == [
        (1, Reason.INVALID_JSON),
        (2, Reason.NON_FINITE_FEATURE),
    ]
    assert batch.matrix.shape == (2, 3)


def test_integer_event_ids_and_missing_ts_are_carried_through() -> None:
    value = orjson.dumps({"event_id": 42, "features": {"f0": 1, "f1": 2, "f2": 3}})
    batch = decode_batch([value], SCHEMA, LIMITS)
    assert batch.event_ids == [42] and batch.event_ts == [None]


def test_predictions_carry_id_version_score_and_times() -> None:
    batch = decode_batch([GOOD], SCHEMA, LIMITS)
    [encoded] = encode_predictions(batch, np.array([0.25]), 99.5, [("v7", "canary")])
    assert orjson.loads(encoded) == {
        "event_id": "e-1",
        "model_version": "v7",
        "arm": "canary",
        "score": 0.25,
        "event_ts": 1.5,
        "scored_at": 99.5,
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


event_like = st.fixed_dictionaries(
    {"event_id": json_values, "features": st.dictionaries(st.sampled_from(FEATURES), json_values)},
    optional={"ts": json_values},
)
hostile = (
    st.binary(max_size=64)
    | json_values.map(lambda v: json.dumps(v).encode())
    | event_like.map(lambda v: json.dumps(v).encode())
)


@settings(max_examples=300, deadline=None)
@given(st.lists(hostile, max_size=20))
def test_any_input_is_either_scored_or_rejected_never_raises(values: list[bytes]) -> None:
    batch = decode_batch(values, SCHEMA, LIMITS)
    indices = batch.accepted + [r.index for r in batch.rejects]
    assert sorted(indices) == list(range(len(values)))
    assert batch.matrix.shape == (len(batch.accepted), len(FEATURES))
    assert np.isfinite(batch.matrix).all()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                name: st.floats(allow_nan=False, allow_infinity=False, width=64)
                | st.integers(-(2**53), 2**53)
                for name in FEATURES
            }
        ),
        min_size=1,
        max_size=20,
    )
)
def test_valid_features_round_trip_exactly(rows: list[dict[str, float]]) -> None:
    values = [orjson.dumps({"event_id": f"e{i}", "features": row}) for i, row in enumerate(rows)]
    batch = decode_batch(values, SCHEMA, LIMITS)
    assert batch.rejects == []
    expected = [[float(row[name]) for name in FEATURES] for row in rows]
    assert batch.matrix.tolist() == expected


numbers = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**63), 2**64 - 1)
near_valid = st.fixed_dictionaries(
    {
        "event_id": st.text(max_size=3) | st.integers() | json_values,
        "features": st.fixed_dictionaries({name: numbers | json_values for name in FEATURES}),
    },
    optional={"ts": st.none() | numbers | st.booleans() | st.text(max_size=2)},
).map(lambda v: json.dumps(v).encode())


@settings(max_examples=300, deadline=None)
@given(st.lists(near_valid | hostile, max_size=12))
def test_batch_decoding_agrees_with_decoding_each_event_alone(values: list[bytes]) -> None:
    """The batch fast path is an optimisation only: same rows, ids, stamps and reasons as the
    exact one-event-at-a-time path."""
    batch = decode_batch(values, SCHEMA, LIMITS)
    accepted, rows, reasons = [], [], {}
    for index, value in enumerate(values):
        try:
            event_id, ts, row = decode_event(value, SCHEMA, LIMITS)
        except EventRejected as rejected:
            reasons[index] = rejected.reason
            continue
        numbers = cast("list[float]", row)
        if all(math.isfinite(v) for v in numbers):
            accepted.append((index, event_id, ts))
            rows.append([float(v) for v in numbers])
        else:
            reasons[index] = Reason.NON_FINITE_FEATURE
    assert list(zip(batch.accepted, batch.event_ids, batch.event_ts, strict=True)) == accepted
    assert batch.matrix.tolist() == rows
    assert {r.index: r.reason for r in batch.rejects} == reasons
    assert [r.index for r in batch.rejects] == sorted(reasons)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text() | st.integers(-(2**63), 2**64 - 1),
            st.none() | st.floats(allow_nan=False, allow_infinity=False),
            st.floats(),
        ),
        max_size=10,
    ),
    st.text(min_size=1),
    st.floats(allow_nan=False, allow_infinity=False),
)
def test_predictions_are_byte_for_byte_the_orjson_of_the_record(
    events: list[tuple[str | int, float | None, float]], version: str, scored_at: float
) -> None:
    batch = decode_batch([], SCHEMA, LIMITS)
    batch.event_ids = [event_id for event_id, _, _ in events]
    batch.event_ts = [ts for _, ts, _ in events]
    scores = np.array([score for _, _, score in events], dtype=np.float64)
    expected = [
        orjson.dumps(
            {
                "event_id": event_id,
                "model_version": version,
                "arm": "primary",
                "score": score,
                "event_ts": ts,
                "scored_at": scored_at,
            }
        )
        for event_id, ts, score in events
    ]
    assert encode_predictions(batch, scores, scored_at, [(version, "primary")]) == expected
