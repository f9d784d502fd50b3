"""Decoding events for versions with category features and missing values: each wrong value
gets one reason naming its feature, and any JSON value in any feature either decodes or is
rejected with one of them."""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.models.features import FeatureSchema
from worker.stream.events import EventRejected, Limits, Reason, decode_batch, decode_event

NAMES = ("n0", "n1", "c0", "c1")
KINDS = ("number", "number", "category", "category")
ACCEPTING = FeatureSchema(NAMES, KINDS, accepts_missing=True)  # type: ignore[arg-type]
REJECTING = FeatureSchema(NAMES, KINDS, accepts_missing=False)  # type: ignore[arg-type]
LIMITS = Limits(10_000, max_category_chars=16)


def event(**features: object) -> bytes:
    return orjson.dumps({"event_id": "e-1", "ts": 1.5, "features": features})


def rejected(value: bytes, schema: FeatureSchema = ACCEPTING) -> tuple[str, str]:
    batch = decode_batch([value], schema, LIMITS)
    assert len(batch.rejects) == 1 and not batch.accepted
    return batch.rejects[0].reason, batch.rejects[0].detail


def test_categories_and_missing_values_become_one_object_matrix_in_feature_order() -> None:
    values = [
        event(c1="b", n0=1, c0="a", n1=2.5, extra=[1]),
        event(n0=None, n1=3, c0=None),  # c1 absent
    ]
    batch = decode_batch(values, ACCEPTING, LIMITS)
    assert batch.rejects == []
    assert batch.matrix.dtype == object
    assert batch.matrix[0].tolist() == [1, 2.5, "a", "b"]
    assert batch.matrix[1].tolist() == [None, 3, None, None]  # missing, NaN to the model


def test_the_frame_has_the_columns_and_dtypes_a_dataframe_fit_sees() -> None:
    frame_schema = FeatureSchema(NAMES, KINDS, True, "frame")  # type: ignore[arg-type]
    batch = decode_batch([event(n0=1, n1=None, c0="a", c1=None)], frame_schema, LIMITS)
    frame = frame_schema.model_input(batch.matrix)
    assert list(frame.columns) == list(NAMES)
    assert frame["n0"].dtype == np.float64 and frame["n1"].dtype == np.float64
    assert frame["c0"].tolist() == ["a"] and math.isnan(frame["c1"].tolist()[0])


def test_a_numbers_only_version_that_accepts_missing_values_gets_a_float_matrix() -> None:
    schema = FeatureSchema(("n0", "n1"), ("number", "number"), accepts_missing=True)
    batch = decode_batch([event(n0=1), event(n0=2, n1=None)], schema, LIMITS)
    assert batch.matrix.dtype == np.float64
    assert batch.matrix[:, 0].tolist() == [1.0, 2.0] and np.isnan(batch.matrix[:, 1]).all()


@pytest.mark.parametrize(
    ("features", "reason", "named"),
    [
        ({"n0": 1, "n1": 2, "c0": ["a"], "c1": "b"}, Reason.INVALID_CATEGORY, "c0"),
        ({"n0": 1, "n1": 2, "c0": "a", "c1": {"k": 1}}, Reason.INVALID_CATEGORY, "c1"),
        ({"n0": 1, "n1": 2, "c0": 7, "c1": "b"}, Reason.INVALID_CATEGORY, "c0"),
        ({"n0": 1, "n1": 2, "c0": True, "c1": "b"}, Reason.INVALID_CATEGORY, "c0"),
        ({"n0": 1, "n1": 2, "c0": "a", "c1": "x" * 17}, Reason.CATEGORY_TOO_LONG, "c1"),
        ({"n0": "1", "n1": 2, "c0": "a", "c1": "b"}, Reason.NON_NUMERIC_FEATURE, "n0"),
        ({"n0": 1, "n1": False, "c0": "a", "c1": "b"}, Reason.NON_NUMERIC_FEATURE, "n1"),
        ({"n0": 1, "n1": [2], "c0": "a", "c1": "b"}, Reason.NON_NUMERIC_FEATURE, "n1"),
    ],
)
def test_each_wrong_value_gets_one_reason_naming_its_feature(
    features: dict[str, object], reason: str, named: str
) -> None:
    got, detail = rejected(event(**features))
    assert got == reason
    assert repr(named) in detail


def test_a_category_of_exactly_the_limit_is_taken() -> None:
    batch = decode_batch([event(n0=1, n1=2, c0="x" * 16, c1="b")], ACCEPTING, LIMITS)
    assert batch.rejects == [] and batch.matrix[0, 2] == "x" * 16


def test_numbers_outside_float_range_and_non_finite_literals_name_the_feature() -> None:
    too_big = b'{"event_id": "e", "features": {"n0": 1e400, "n1": 1, "c0": "a", "c1": "b"}}'
    assert rejected(too_big) == (Reason.NON_FINITE_FEATURE, "feature 'n0' is not finite")
    nan = b'{"event_id": "e", "features": {"n0": 1, "n1": NaN, "c0": "a", "c1": "b"}}'
    assert rejected(nan) == (Reason.NON_FINITE_FEATURE, "feature 'n1' is not finite")


def test_text_that_cannot_be_utf8_names_its_feature() -> None:
    value = b'{"event_id": "e", "features": {"n0": 1, "n1": 1, "c0": "\\ud800", "c1": "b"}}'
    reason, detail = rejected(value)
    assert reason == Reason.INVALID_UTF8 and "feature 'c0'" in detail


def test_a_version_that_rejects_missing_values_dead_letters_null_and_absent_alike() -> None:
    assert rejected(event(n0=1, n1=2, c0=None, c1="b"), REJECTING) == (
        Reason.MISSING_FEATURE,
        "required feature 'c0' is missing",
    )
    assert rejected(event(n0=1, c0="a", c1="b"), REJECTING) == (
        Reason.MISSING_FEATURE,
        "required feature 'n1' is missing",
    )


def test_a_batch_with_every_kind_of_fault_still_decodes_the_rest() -> None:
    good = [event(n0=i, n1=None, c0=f"v{i}", c1="b") for i in range(3)]
    bad = [
        event(n0=1, n1=2, c0=[1], c1="b"),
        event(n0="x", n1=2, c0="a", c1="b"),
        event(n0=1, n1=2, c0="a", c1="y" * 40),
        b"not json",
    ]
    values = [good[0], bad[0], bad[1], good[1], bad[2], bad[3], good[2]]
    batch = decode_batch(values, ACCEPTING, LIMITS)
    assert batch.accepted == [0, 3, 6]
    assert [r.index for r in batch.rejects] == [1, 2, 4, 5]
    assert batch.matrix[:, 2].tolist() == ["v0", "v1", "v2"]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)
REASONS = {
    Reason.MISSING_FEATURE,
    Reason.NON_NUMERIC_FEATURE,
    Reason.NON_FINITE_FEATURE,
    Reason.INVALID_CATEGORY,
    Reason.CATEGORY_TOO_LONG,
}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.sampled_from(NAMES), json_values, max_size=len(NAMES)),
        min_size=1,
        max_size=12,
    ),
    st.booleans(),
)
def test_any_json_value_in_any_feature_scores_or_gets_one_of_the_reasons(
    rows: list[dict[str, object]], accepts_missing: bool
) -> None:
    schema = FeatureSchema(NAMES, KINDS, accepts_missing)  # type: ignore[arg-type]
    values = [
        json.dumps({"event_id": f"e{i}", "features": row}).encode() for i, row in enumerate(rows)
    ]
    batch = decode_batch(values, schema, LIMITS)
    assert sorted(batch.accepted + [r.index for r in batch.rejects]) == list(range(len(rows)))
    assert {r.reason for r in batch.rejects} <= REASONS
    for reject in batch.rejects:  # the batch agrees with the one-event path, feature named
        with pytest.raises(EventRejected) as alone:
            decode_event(values[reject.index], schema, LIMITS)
        assert (alone.value.reason, alone.value.detail) == (reject.reason, reject.detail)
    for position, index in enumerate(batch.accepted):
        for j, (name, kind) in enumerate(zip(NAMES, KINDS, strict=True)):
            given_value = rows[index].get(name)
            held = batch.matrix[position, j]
            if given_value is None:
                assert accepts_missing and held is None
            elif kind == "category":
                assert held == given_value and isinstance(held, str)
            else:
                assert held == given_value and type(given_value) in (int, float)
