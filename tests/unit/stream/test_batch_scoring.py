"""One batch scored by the primary, a canary and shadows (scoring.py), with stand-in models."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from http import HTTPStatus

import numpy as np
import orjson
import pytest

from worker.models.features import FeatureSchema
from worker.models.holder import LoadedModel, Serving
from worker.models.profile import build_profile
from worker.models.route import Canary, Route
from worker.stream.arms import arm_buckets
from worker.stream.events import Limits, Reason
from worker.stream.predict import predict_body
from worker.stream.scoring import score_batch

LIMIT = Limits(10_000)


def model(
    version: str, features: tuple[str, ...], score: Callable[[np.ndarray], np.ndarray]
) -> LoadedModel:
    return LoadedModel(
        version, f"sha-{version}", FeatureSchema.numbers(features), "regressor", score
    )


def first_column_plus(offset: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda matrix: matrix[:, 0] + offset


PRIMARY = model("v1", ("a", "b"), first_column_plus(0))
CANARY = model("v2", ("a", "b"), first_column_plus(1000))


def event(i: int, **features: float | None) -> bytes:
    return orjson.dumps({"event_id": f"e-{i}", "features": features or {"a": i, "b": 0}})


def keys_for(n: int) -> list[bytes]:
    return [f"user-{i}".encode() for i in range(n)]


def serving(
    canary: LoadedModel | None = None, percent: float = 0, *shadows: LoadedModel
) -> Serving:
    route = Route(
        Canary(canary.version, percent) if canary else None, tuple(s.version for s in shadows)
    )
    return Serving(PRIMARY, canary, shadows, route)


def test_each_key_goes_to_the_arm_its_bucket_names_and_order_is_kept() -> None:
    values, keys = [event(i) for i in range(400)], keys_for(400)

    scored = score_batch(values, keys, serving(CANARY, 30), LIMIT)

    predictions = [orjson.loads(p) for p in scored.predictions]
    assert scored.accepted == list(range(400))  # input order, whatever the arms
    on_canary = (arm_buckets(keys, [""] * 400) < 3000).tolist()
    for i, prediction in enumerate(predictions):
        arm = "canary" if on_canary[i] else "primary"
        assert prediction["arm"] == arm
        assert prediction["model_version"] == ("v2" if on_canary[i] else "v1")
        assert prediction["score"] == i + (1000 if on_canary[i] else 0)
    assert scored.counts == {
        ("v1", "primary"): 400 - sum(on_canary),
        ("v2", "canary"): sum(on_canary),
    }


def test_without_a_key_the_event_id_decides_the_arm() -> None:
    values = [event(i) for i in range(200)]

    scored = score_batch(values, [None] * 200, serving(CANARY, 50), LIMIT)

    by_id = arm_buckets([None] * 200, [f"e-{i}" for i in range(200)]) < 5000
    arms = [orjson.loads(p)["arm"] for p in scored.predictions]
    assert arms == ["canary" if c else "primary" for c in by_id.tolist()]


def test_a_shadow_scores_every_event_to_its_own_list_and_its_failures_are_only_counted() -> None:
    def fails_on_negative(matrix: np.ndarray) -> np.ndarray:
        if (matrix[:, 0] < 0).any():
            raise ValueError("negative")
        return matrix[:, 0] * 2

    shadow = model("v9", ("a", "b"), fails_on_negative)
    values = [event(i) for i in range(5)] + [event(5, a=-1, b=0), b"not json"]

    scored = score_batch(values, keys_for(7), serving(None, 0, shadow), LIMIT)

    assert [orjson.loads(p)["score"] for p in scored.predictions] == [0, 1, 2, 3, 4, -1]
    shadow_out = [orjson.loads(p) for p in scored.shadow_predictions]
    assert [(p["score"], p["arm"], p["model_version"]) for p in shadow_out] == [
        (2 * i, "shadow", "v9") for i in range(5)
    ]
    assert scored.shadow_accepted == [0, 1, 2, 3, 4]
    assert scored.shadow_failures == {"v9": 1}
    assert [(r.index, r.reason, r.model_version) for r in scored.rejects] == [
        (6, Reason.INVALID_JSON, "v1")  # the primary's reject only: the shadow adds none
    ]


def test_a_version_with_fewer_features_reads_its_columns_and_one_with_others_decodes_again() -> (
    None
):
    only_b = model("v3", ("b",), lambda m: m[:, 0])
    needs_c = model("v4", ("a", "c"), lambda m: m[:, 1])
    values = [
        orjson.dumps({"event_id": "e-0", "features": {"a": 1, "b": 2, "c": 3}}),
        orjson.dumps({"event_id": "e-1", "features": {"a": 1, "b": 5}}),  # no c
    ]

    scored = score_batch(values, [None, None], serving(None, 0, only_b, needs_c), LIMIT)

    shadow_out = [orjson.loads(p) for p in scored.shadow_predictions]
    assert [(p["model_version"], p["event_id"], p["score"]) for p in shadow_out] == [
        ("v3", "e-0", 2),
        ("v3", "e-1", 5),
        ("v4", "e-0", 3),
    ]
    assert scored.shadow_failures == {"v3": 0, "v4": 1}
    assert scored.rejects == []


def test_a_canary_that_cannot_read_an_event_of_its_arm_dead_letters_it_naming_itself() -> None:
    canary = model("v5", ("a", "c"), lambda m: m[:, 1])
    values = [event(i) for i in range(50)]  # no feature c anywhere

    scored = score_batch(values, keys_for(50), serving(canary, 50), LIMIT)

    on_canary = set(np.flatnonzero(arm_buckets(keys_for(50), [""] * 50) < 5000).tolist())
    assert {r.index for r in scored.rejects} == on_canary
    assert {(r.reason, r.model_version) for r in scored.rejects} == {(Reason.MISSING_FEATURE, "v5")}
    assert scored.accepted == sorted(set(range(50)) - on_canary)


def test_a_canary_that_raises_on_a_row_dead_letters_only_that_row_of_its_arm() -> None:
    def fails_on_9(matrix: np.ndarray) -> np.ndarray:
        if (matrix[:, 0] == 9).any():
            raise ValueError("nine")
        return matrix[:, 0] + 1000

    canary = model("v6", ("a", "b"), fails_on_9)
    keys = keys_for(100)
    on_canary = (arm_buckets(keys, [""] * 100) < 5000).tolist()
    assert on_canary[9]  # event 9 (a = 9) is on the canary's arm

    scored = score_batch([event(i) for i in range(100)], keys, serving(canary, 50), LIMIT)

    assert [(r.index, r.reason, r.model_version) for r in scored.rejects] == [
        (9, Reason.SCORING_FAILED, "v6")
    ]
    assert scored.accepted == [i for i in range(100) if i != 9]
    scores = [orjson.loads(p)["score"] for p in scored.predictions]
    assert scores == [i + (1000 if on_canary[i] else 0) for i in scored.accepted]


def test_predict_over_http_takes_the_arm_from_the_events_key_field_else_its_event_id() -> None:
    events = [
        {"event_id": f"e-{i}", "key": f"user-{i}", "features": {"a": i, "b": 0}} for i in range(40)
    ]
    events.append({"event_id": "e-40", "features": {"a": 40, "b": 0}})  # no key: by event_id

    status, answer = predict_body(orjson.dumps(events), serving(CANARY, 50), LIMIT)

    assert status == HTTPStatus.OK
    keys: list[bytes | None] = [f"user-{i}".encode() for i in range(40)] + [None]
    expected = arm_buckets(keys, [f"e-{i}" for i in range(41)]) < 5000
    assert [p["arm"] for p in answer] == ["canary" if c else "primary" for c in expected.tolist()]
    refused = predict_body(
        orjson.dumps({"event_id": "e", "key": 7, "features": {}}), serving(), LIMIT
    )
    assert refused[0] == HTTPStatus.BAD_REQUEST and "key must be a string" in refused[1]["error"]


def profiled(version: str, score: Callable[[np.ndarray], np.ndarray]) -> LoadedModel:
    """A version with a reference profile: a and b each split at 1, scores at 1000 (two bins
    each, edges at the reference's medians, values the reference holds)."""
    reference = np.array([[-1.0, -1.0], [1.0, 1.0]] * 50)
    profile = build_profile(reference, ("a", "b"), np.array([0.0, 1000.0] * 50), bins=2)
    return dataclasses.replace(model(version, ("a", "b"), score), profile=profile)


def test_each_version_counts_its_rows_failures_and_reference_bins() -> None:
    """What the drift figures and the error-rate guard are built from: per version, the rows
    it was given, those it raised on, and (with a profile) its rows' and scores' bins."""

    def picky(matrix: np.ndarray) -> np.ndarray:
        if (matrix[:, 0] == 13).any():
            raise ValueError("poison")
        return matrix[:, 0]

    primary = profiled("v1", picky)
    shadow = model("v3", ("a", "b"), first_column_plus(0))
    values = [event(i, a=float(i), b=-1.0) for i in range(20)]

    scored = score_batch(values, keys_for(20), Serving(primary, None, (shadow,)), LIMIT)

    usage = scored.usage["v1"]
    assert (usage.rows, usage.failed) == (20, 1)
    assert usage.bins is not None
    a_bins, b_bins, score_bins = usage.bins[0:2], usage.bins[2:4], usage.bins[4:6]
    assert a_bins.tolist() == [1, 18]  # a = 0 .. 19 without the poison 13: only 0 is below 1
    assert b_bins.tolist() == [19, 0]
    assert score_bins.tolist() == [19, 0]  # scores 0..19, below the reference's edge
    assert (scored.usage["v3"].rows, scored.usage["v3"].failed) == (20, 0)
    assert scored.usage["v3"].bins is None  # no profile, no bins


def test_the_single_pass_arm_path_counts_each_arm_for_its_own_version() -> None:
    canary = profiled("v2", first_column_plus(1000))
    values, keys = [event(i) for i in range(400)], keys_for(400)

    scored = score_batch(values, keys, serving(canary, 30), LIMIT)

    on_canary = scored.counts[("v2", "canary")]
    assert scored.usage["v2"].rows == on_canary > 0
    assert scored.usage["v1"].rows == 400 - on_canary
    assert scored.usage["v1"].bins is None
    assert scored.usage["v2"].bins is not None
    assert scored.usage["v2"].bins[4:6].tolist() == [0, on_canary]  # scores a + 1000 >= 1000


def nan_where_a_is_negative(matrix: np.ndarray) -> np.ndarray:
    """What a Pipeline step like FunctionTransformer(np.log1p) makes of a value below -1."""
    with np.errstate(invalid="ignore"):
        logged: np.ndarray = np.log1p(matrix[:, 0])
    return logged


@pytest.mark.parametrize("arm", ["primary", "canary", "shadow"])
def test_a_score_that_is_not_a_finite_number_is_dead_lettered_and_counted(arm: str) -> None:
    """Never a null score downstream: the row is scoring_failed in its version's error rate,
    and the rest of the batch is scored (a shadow only counts it)."""
    bad = model("v9", ("a", "b"), nan_where_a_is_negative)
    values = [event(i, a=-5.0 if i % 4 == 0 else float(i), b=0.0) for i in range(40)]
    if arm == "primary":
        chosen = Serving(bad)
    elif arm == "canary":
        chosen = Serving(PRIMARY, bad, (), Route(Canary("v9", 50)))
    else:
        chosen = Serving(PRIMARY, None, (bad,), Route(None, ("v9",)))

    scored = score_batch(values, keys_for(40), chosen, LIMIT)

    scores = [orjson.loads(p)["score"] for p in scored.predictions + scored.shadow_predictions]
    assert all(isinstance(s, float) and math.isfinite(s) for s in scores)
    bad_rows = scored.counts[("v9", arm)]
    failed = scored.usage["v9"].failed
    assert failed > 0 and scored.usage["v9"].rows == bad_rows + failed
    if arm == "shadow":
        assert scored.shadow_failures["v9"] == failed and scored.rejects == []
        assert len(scored.predictions) == 40
        return
    assert {r.reason for r in scored.rejects} == {Reason.SCORING_FAILED}
    assert all(r.model_version == "v9" for r in scored.rejects)
    assert "not a finite number: nan" in scored.rejects[0].detail
    assert len(scored.rejects) == failed
    assert sorted(scored.accepted + [r.index for r in scored.rejects]) == list(range(40))


def test_predict_takes_category_and_missing_values_as_the_stream_does() -> None:
    schema = FeatureSchema(("a", "c"), ("number", "category"), accepts_missing=True)

    def by_category(matrix: np.ndarray) -> np.ndarray:
        return np.array([1.0 if c == "x" else 0.0 for c in matrix[:, 1]])

    mixed = LoadedModel("v5", "sha", schema, "regressor", by_category)
    events = [
        {"event_id": "e-1", "features": {"a": 1, "c": "x"}},
        {"event_id": "e-2", "features": {"a": None}},
    ]
    status, answer = predict_body(orjson.dumps(events), Serving(mixed), LIMIT)
    assert status == HTTPStatus.OK
    assert [p["score"] for p in answer] == [1.0, 0.0]
    bad = {"event_id": "e-3", "features": {"a": 1, "c": ["x"]}}
    status, refused = predict_body(orjson.dumps(bad), Serving(mixed), LIMIT)
    assert status == HTTPStatus.BAD_REQUEST
    assert refused["events"][0]["error"] == "invalid_category"


def test_missing_values_a_version_refuses_count_in_its_error_rate() -> None:
    """Dead-lettered as missing_feature, and counted as rows the version failed; other bad
    input (broken JSON) is the pipeline's fault, not the version's."""
    values = [event(0), event(1, a=1.0), event(2, a=2.0, b=None), b"{", event(3)]
    scored = score_batch(values, keys_for(5), Serving(PRIMARY), LIMIT)
    assert [r.reason for r in scored.rejects] == [
        Reason.MISSING_FEATURE,
        Reason.MISSING_FEATURE,
        Reason.INVALID_JSON,
    ]
    usage = scored.usage["v1"]
    assert (usage.rows, usage.failed) == (4, 2)
