"""Reference profiles: quantile bins, live bin counts, PSI, the stored JSON."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest

from worker.models.profile import (
    PSI_FLOOR,
    ReferenceProfile,
    build_profile,
)

LEVELS = np.arange(1, 10) / 10


def two_bin_profile(proportions: list[float]) -> ReferenceProfile:
    """One feature split at 0 into two bins, and a one-bin score."""
    return ReferenceProfile(
        features=("x",),
        edges=(np.array([0.0]),),
        proportions=(np.array(proportions),),
        score_edges=np.array([]),
        score_proportions=np.array([1.0]),
        rows=10,
    )


def slow_bin_counts(profile: ReferenceProfile, matrix: np.ndarray, scores: np.ndarray) -> list[int]:
    """The definition, one value at a time: a value's bin is the number of edges <= it."""
    counts = [0] * profile.width
    columns = [*(list(matrix[:, j]) for j in range(matrix.shape[1])), list(scores)]
    offset = 0
    for edges, column in zip([*profile.edges, profile.score_edges], columns, strict=True):
        for value in column:
            counts[offset + sum(1 for edge in edges if edge <= value)] += 1
        offset += len(edges) + 1
    return counts


# --- building --------------------------------------------------------------------------------


def test_edges_are_the_deciles_and_split_distinct_values_evenly() -> None:
    column = np.random.default_rng(1).normal(size=1000)
    profile = build_profile(column[:, None], ["x"], column)
    expected = np.quantile(column, LEVELS, method="higher")
    assert np.array_equal(profile.edges[0], expected)
    assert np.array_equal(profile.proportions[0], np.full(10, 0.1))
    assert profile.sizes == [10, 10] and profile.width == 20


def test_repeated_values_give_fewer_distinct_edges() -> None:
    rng = np.random.default_rng(2)
    flag = (rng.random(1000) < 0.4).astype(float)
    rows = np.column_stack([np.full(1000, 7.0), flag])
    profile = build_profile(rows, ["constant", "flag"], rng.random(1000))
    assert profile.edges[0].size == 0 and np.array_equal(profile.proportions[0], [1.0])
    assert np.array_equal(profile.edges[1], [1.0])
    assert np.array_equal(profile.proportions[1], [1 - flag.mean(), flag.mean()])
    assert profile.sizes[:2] == [1, 2]


def test_proportions_match_a_hand_count() -> None:
    column = np.array([1, 1, 1, 2, 3, 3, 10, 20], dtype=float)
    profile = build_profile(column[:, None], ["x"], column, bins=4)
    # quantiles (method "higher") at .25/.5/.75 are 1, 3, 10; the edge at the minimum goes
    assert np.array_equal(profile.edges[0], [3.0, 10.0])
    assert np.array_equal(profile.proportions[0], [4 / 8, 2 / 8, 2 / 8])
    assert math.isclose(profile.proportions[0].sum(), 1.0)
    assert profile.rows == 8


@pytest.mark.parametrize(
    ("rows", "scores", "message"),
    [
        (np.empty((0, 2)), np.empty(0), "reference rows are empty"),
        (np.zeros((3, 3)), np.zeros(3), r"must be n x 2, got shape \(3, 3\)"),
        (np.zeros((3, 2)), np.zeros(4), "one score per reference row"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), np.zeros(2), "must be finite or missing"),
        (np.zeros((2, 2)), np.array([0.0, np.inf]), "scores must all be finite"),
    ],
)
def test_build_refuses_empty_misshapen_or_non_finite_input(
    rows: np.ndarray, scores: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_profile(rows, ["a", "b"], scores)


# --- bin counts ------------------------------------------------------------------------------


def test_bin_counts_match_the_per_value_definition_on_and_off_the_edges() -> None:
    rng = np.random.default_rng(3)
    profile = build_profile(rng.normal(size=(500, 4)), list("abcd"), rng.random(500))
    live = rng.normal(scale=2, size=(300, 4))
    live[:40, 1] = rng.choice(profile.edges[1], size=40)  # exactly on an edge: the bin above
    live[40:50] = 100.0
    live[50:60] = -100.0
    scores = rng.random(300)
    scores[:20] = rng.choice(profile.score_edges, size=20)
    counts = profile.bin_counts(live, scores)
    assert counts.dtype == np.int64 and counts.shape == (profile.width,)
    assert counts.tolist() == slow_bin_counts(profile, live, scores)


def test_empty_batch_gives_zeros_and_a_misshapen_one_is_refused() -> None:
    profile = build_profile(np.arange(20.0).reshape(10, 2), ["a", "b"], np.arange(10.0))
    assert profile.bin_counts(np.empty((0, 2)), np.empty(0)).tolist() == [0] * profile.width
    with pytest.raises(ValueError, match=r"must be n x 2, got shape \(3, 3\)"):
        profile.bin_counts(np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="one score per live row"):
        profile.bin_counts(np.zeros((3, 2)), np.zeros(2))


# --- PSI -------------------------------------------------------------------------------------


def test_psi_of_the_reference_against_itself_is_zero() -> None:
    rng = np.random.default_rng(4)
    profile = build_profile(rng.normal(size=(1000, 3)), list("abc"), rng.random(1000))
    counts = np.concatenate([*profile.proportions, profile.score_proportions]) * 20_000
    per_feature, score = profile.psi(counts)
    assert per_feature.keys() == {"a", "b", "c"}
    assert all(abs(value) < 1e-12 for value in per_feature.values())
    assert score is not None and abs(score) < 1e-12


def test_a_feature_shifted_by_one_sd_stands_out() -> None:
    rng = np.random.default_rng(5)
    weights = np.array([0.5, -0.3, 0.2])
    reference = rng.normal(size=(20_000, 3))
    profile = build_profile(reference, list("abc"), reference @ weights)
    live = rng.normal(size=(20_000, 3))
    live[:, 1] += 1.0
    per_feature, score = profile.psi(profile.bin_counts(live, live @ weights))
    assert per_feature["b"] > 0.25
    assert per_feature["a"] < 0.02 and per_feature["c"] < 0.02
    assert score is not None and score > per_feature["a"]


def test_psi_on_two_bins_is_the_formula() -> None:
    per_feature, score = two_bin_profile([0.5, 0.5]).psi(np.array([30, 10, 40]))
    expected = (0.75 - 0.5) * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert per_feature == {"x": pytest.approx(expected, rel=1e-12)}
    assert score == 0.0


def test_an_empty_bin_on_either_side_is_raised_to_the_floor() -> None:
    live_empty, _ = two_bin_profile([0.5, 0.5]).psi(np.array([40, 0, 40]))
    expected = (1 - 0.5) * math.log(1 / 0.5) + (PSI_FLOOR - 0.5) * math.log(PSI_FLOOR / 0.5)
    assert live_empty["x"] == pytest.approx(expected, rel=1e-12)
    reference_empty, _ = two_bin_profile([1.0, 0.0]).psi(np.array([20, 20, 40]))
    expected = (0.5 - 1) * math.log(0.5 / 1) + (0.5 - PSI_FLOOR) * math.log(0.5 / PSI_FLOOR)
    assert reference_empty["x"] == pytest.approx(expected, rel=1e-12)


def test_columns_without_live_rows_are_left_out() -> None:
    profile = two_bin_profile([0.5, 0.5])
    assert profile.psi(np.zeros(3)) == ({}, None)
    assert profile.psi(np.array([0, 0, 5])) == ({}, 0.0)


def test_psi_refuses_counts_of_the_wrong_layout() -> None:
    with pytest.raises(ValueError, match="bin counts must be 3 non-negative numbers"):
        two_bin_profile([0.5, 0.5]).psi(np.zeros(4))
    with pytest.raises(ValueError, match="bin counts must be 3 non-negative numbers"):
        two_bin_profile([0.5, 0.5]).psi(np.array([1, -1, 0]))


# --- JSON ------------------------------------------------------------------------------------


def test_json_round_trips_every_float_exactly() -> None:
    rng = np.random.default_rng(6)
    reference = rng.lognormal(size=(997, 5)) * np.array([1e-9, 1.0, 3.3, 1e7, 0.1])
    profile = build_profile(reference, list("abcde"), rng.random(997), bins=13)
    for raw in (profile.to_json(), profile.to_json().decode()):
        back = ReferenceProfile.from_json(raw)
        assert back.features == profile.features and back.rows == profile.rows
        pairs = [
            *zip(back.edges, profile.edges, strict=True),
            *zip(back.proportions, profile.proportions, strict=True),
            (back.score_edges, profile.score_edges),
            (back.score_proportions, profile.score_proportions),
        ]
        assert all(np.array_equal(a, b) and a.dtype == np.float64 for a, b in pairs)
    assert not back.edges[0].flags.writeable


def valid_json() -> dict[str, Any]:
    return {
        "features": ["x", "y"],
        "rows": 10,
        "edges": [[0.0], [1.0, 2.0]],
        "proportions": [[0.5, 0.5], [0.2, 0.3, 0.5]],
        "score_edges": [0.5],
        "score_proportions": [0.4, 0.6],
    }


def test_the_hand_written_valid_json_loads() -> None:
    profile = ReferenceProfile.from_json(orjson.dumps(valid_json()))
    assert profile.sizes == [2, 3, 2]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"edges": [[0.0]]}, "2 features but 1 edge lists and 2 proportion lists"),
        ({"edges": [[0.0], [2.0, 1.0]]}, "y: edges must be finite and strictly increasing"),
        ({"edges": [[0.0], [1.0, 1.0]]}, "y: edges must be finite and strictly increasing"),
        ({"proportions": [[0.5, 0.5], [0.5, 0.5]]}, "y: 3 bins but 2 proportions"),
        ({"proportions": [[0.5, 0.4], [0.2, 0.3, 0.5]]}, "x: proportions sum to 0.9, not 1"),
        ({"score_proportions": [1.5, -0.5]}, "score: proportions must be finite and non-neg"),
        ({"score_edges": [None]}, "score_edges must hold numbers only"),
        ({"score_edges": [True]}, "score_edges must hold numbers only"),
        ({"edges": "0.0"}, "edges must be a list"),
        ({"edges": [[[0.0]], [1.0, 2.0]]}, "edges must hold numbers only"),
        ({"features": ["x", "x"]}, "features must be distinct"),
        ({"features": ["x", 2]}, "features must be names"),
        ({"rows": 0}, "rows must be a positive integer"),
        ({"rows": True}, "rows must be a positive integer"),
        ({"extra": 1}, "must be an object with"),
    ],
)
def test_from_json_names_what_is_malformed(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReferenceProfile.from_json(orjson.dumps(valid_json() | change))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "must be an object with"),
        (b'{"features": []}', "must be an object with"),
    ],
)
def test_from_json_refuses_garbage(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReferenceProfile.from_json(raw)


# --- categories and missing values -----------------------------------------------------------


def test_a_category_feature_bins_its_top_categories_then_other_and_missing() -> None:
    rows = np.array(
        [
            [v, n]
            for v, n in zip(["a"] * 5 + ["b"] * 3 + ["c", None], [1.0] * 9 + [None], strict=True)
        ],
        dtype=object,
    )
    profile = build_profile(
        rows, ["c", "n"], np.linspace(0, 1, 10), bins=2, category_features=["c"], missing=True
    )
    assert profile.categories == (("a", "b"), None)
    assert profile.proportions[0].tolist() == [0.5, 0.3, 0.1, 0.1]  # a, b, other, missing
    assert profile.proportions[1].tolist() == [0.9, 0.1]  # one bin (constant), missing
    live = np.array([["b", 1.0], ["never-seen", None], [None, 2.0]], dtype=object)
    counts = profile.bin_counts(live, np.array([0.1, 0.2, 0.9]))
    assert counts[:4].tolist() == [0, 1, 1, 1] and counts[4:6].tolist() == [2, 1]
    again = ReferenceProfile.from_json(profile.to_json())
    assert again.categories == profile.categories and again.missing
    psi, _ = profile.psi(counts)
    assert set(psi) == {"c", "n"} and psi["c"] > 0


def test_missing_values_in_a_numbers_reference_get_their_own_bin() -> None:
    rows = np.array([[1.0], [2.0], [np.nan], [3.0]])
    profile = build_profile(rows, ["x"], np.array([0.1, 0.2, 0.3, 0.4]), bins=2)
    assert profile.missing and profile.proportions[0][-1] == 0.25
    assert profile.bin_counts(np.array([[np.nan], [5.0]]), np.zeros(2))[:3].tolist() == [0, 1, 1]


def test_a_numbers_only_profile_is_stored_as_before_categories() -> None:
    profile = build_profile(np.arange(20.0).reshape(10, 2), ["a", "b"], np.arange(10.0))
    assert set(orjson.loads(profile.to_json())) == {
        "features",
        "edges",
        "proportions",
        "score_edges",
        "score_proportions",
        "rows",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"categories": [["a", "a"]]}, "x: categories repeat"),
        ({"categories": [[1]]}, "categories must be lists of text"),
        ({"categories": [["a"]], "edges": [[0.0]]}, "x: a category feature has no edges"),
        ({"categories": [["a"], None]}, "1 features but 2 category lists"),
    ],
)
def test_a_stored_category_profile_names_what_is_malformed(
    change: dict[str, Any], message: str
) -> None:
    good = {
        "features": ["x"],
        "rows": 10,
        "edges": [[]],
        "proportions": [[0.5, 0.5]],
        "score_edges": [],
        "score_proportions": [1.0],
        "categories": [["a"]],
    }
    with pytest.raises(ValueError, match=message):
        ReferenceProfile.from_json(orjson.dumps(good | change))
