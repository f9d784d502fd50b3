"""Quality figures against scikit-learn; DeLong's variance against hand, definition, bootstrap."""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    recall_score,
    roc_auc_score,
)

from worker.lifecycle.quality import (
    COMPARISON_TEST,
    Z_95,
    ClassifierQuality,
    classifier_quality,
    compare_auc,
    compare_paired_auc,
    delong_auc,
    regressor_quality,
)

TOL = 1e-12
FEW_SCORES = [0.0, 0.1, 0.25, 0.5, 0.5001, 0.9, 1.0]  # few values: ties on every draw


def _window(rng: np.random.Generator, n: int, informative: bool) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from true probabilities; a good model scores those, a useless one noise."""
    truth = rng.uniform(size=n)
    labels = (rng.uniform(size=n) < truth).astype(np.float64)
    return (truth if informative else rng.uniform(size=n)), labels


def _brute_force_delong(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """DeLong's definition, O(m n): psi(x, y) = 1 if x > y, 1/2 on a tie, else 0."""
    positive, negative = scores[labels == 1], scores[labels == 0]
    psi = (positive[:, None] > negative[None, :]) + 0.5 * (positive[:, None] == negative[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return float(psi.mean()), float(v10.var(ddof=1) / len(v10) + v01.var(ddof=1) / len(v01))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 40, 1000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_point_figures_equal_scikit_learns(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores, labels = _window(rng, n, informative=True)
    threshold = float(rng.uniform(0.2, 0.8))
    quality = classifier_quality(scores, labels, threshold)
    predicted = (scores >= threshold).astype(np.int64)
    assert quality.labelled == n
    assert quality.positives == int(labels.sum())
    if 0 < labels.sum() < n:
        assert quality.auc == pytest.approx(roc_auc_score(labels, scores), abs=TOL)
    else:
        assert quality.auc is None
    expected = {
        "logloss": log_loss(labels, scores, labels=[0, 1]),
        "brier": brier_score_loss(labels, scores, pos_label=1),
        "accuracy": accuracy_score(labels, predicted),
        "precision": precision_score(labels, predicted, zero_division=0),
        "recall": recall_score(labels, predicted, zero_division=0),
        "mean_score": np.mean(scores),
        "positive_rate": np.mean(labels),
    }
    for name, value in expected.items():
        assert getattr(quality, name) == pytest.approx(value, abs=TOL), name


def test_invalid_labels_are_excluded_from_every_figure_and_counted() -> None:
    scores = np.array([0.9, 0.2, 0.7, 0.4, 0.6, 0.1, 0.8, 0.3])
    labels = np.array([1.0, 0.0, 2.0, 0.5, np.nan, 0.0, 1.0, 1.0])
    quality = classifier_quality(scores, labels, threshold=0.5)
    valid = np.array([0, 1, 5, 6, 7])
    clean = classifier_quality(scores[valid], labels[valid], threshold=0.5)
    assert quality.invalid_labels == 3
    assert quality.labelled == 5
    assert quality.positives == 3
    assert quality.as_json() == {**clean.as_json(), "invalid_labels": 3}


def test_one_class_window_has_no_auc_but_a_finite_logloss() -> None:
    quality = classifier_quality(np.array([0.1, 0.3, 0.6]), np.zeros(3), threshold=0.5)
    assert quality.auc is None
    assert quality.auc_low is None
    assert quality.auc_variance is None
    assert quality.logloss is not None
    assert math.isfinite(quality.logloss)
    assert quality.positive_rate == 0.0
    assert quality.calibration is None
    assert quality.precision == 0.0  # one false positive at 0.6, no true one


def test_empty_window_is_labelled_zero_with_no_figures() -> None:
    quality = classifier_quality(np.array([0.4]), np.array([3.0]), threshold=0.5)
    figures = quality.as_json()
    assert figures.pop("labelled") == 0
    assert figures.pop("positives") == 0
    assert figures.pop("invalid_labels") == 1
    assert set(figures.values()) == {None}
    assert classifier_quality(np.array([]), np.array([]), 0.5).labelled == 0


def test_a_single_positive_gives_an_auc_without_an_interval() -> None:
    """DeLong needs the sample variance of each class's components: two members at least."""
    quality = classifier_quality(np.array([0.9, 0.2, 0.4]), np.array([1.0, 0.0, 0.0]), 0.5)
    assert quality.auc == 1.0
    assert quality.auc_variance is None
    assert quality.auc_low is None
    assert quality.auc_high is None


def test_calibration_is_mean_score_over_positive_rate() -> None:
    quality = classifier_quality(np.array([0.2, 0.4, 0.6, 0.8]), np.array([0.0, 0, 0, 1]), 0.5)
    assert quality.calibration == pytest.approx(0.5 / 0.25, abs=TOL)


def test_interval_is_clipped_to_the_unit_range() -> None:
    scores = np.array([0.9, 0.8, 0.3, 0.1, 0.2, 0.35])
    labels = np.array([1.0, 1, 1, 0, 0, 0])
    quality = classifier_quality(scores, labels, 0.5)
    assert quality.auc == pytest.approx(8 / 9, abs=TOL)
    assert quality.auc is not None
    assert quality.auc_variance is not None
    assert quality.auc + 1.96 * math.sqrt(quality.auc_variance) > 1
    assert quality.auc_high == 1.0
    assert quality.auc_low == pytest.approx(
        8 / 9 - 1.959963984540054 * math.sqrt(quality.auc_variance), abs=TOL
    )


def test_as_json_holds_plain_python_numbers_that_round_trip() -> None:
    rng = np.random.default_rng(7)
    quality = classifier_quality(*_window(rng, 300, informative=True), threshold=0.5)
    figures = quality.as_json()
    assert list(figures) == list(ClassifierQuality.__dataclass_fields__)
    assert all(type(v) in {int, float} for v in figures.values())
    assert orjson.loads(orjson.dumps(figures)) == figures
    assert json.loads(json.dumps(figures)) == figures
    comparison = compare_auc(quality, quality).as_json()
    assert all(type(comparison[k]) is float for k in ("difference", "low", "high"))
    assert orjson.loads(orjson.dumps(comparison)) == comparison


def test_delong_hand_computed_example_with_a_tie() -> None:
    """Positives 0.9, 0.6, 0.4 against negatives 0.7, 0.4, 0.1 (0.4 tied, counting half).

    Each positive's share of negatives below it: V10 = 1, 2/3, 1/2 (mean 13/18 = AUC).
    Each negative's share of positives above it: V01 = 1/3, 5/6, 1 (mean 13/18).
    Deviations from 13/18, in 18ths: V10 5, -1, -4; V01 -7, 2, 5.
    S10 = (25 + 1 + 16) / 324 / 2 = 7/108; S01 = (49 + 4 + 25) / 324 / 2 = 13/108.
    Variance = S10 / 3 + S01 / 3 = 20 / 324 = 5/81.
    """
    scores = np.array([0.9, 0.6, 0.4, 0.7, 0.4, 0.1])
    labels = np.array([1.0, 1, 1, 0, 0, 0])
    auc, variance = delong_auc(scores, labels)
    assert auc == pytest.approx(13 / 18, abs=TOL)
    assert variance == pytest.approx(5 / 81, abs=TOL)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5001, 0.9, 1.0]), st.sampled_from([0, 1])
        ),
        min_size=4,
        max_size=60,
    ).filter(lambda pairs: 2 <= sum(label for _, label in pairs) <= len(pairs) - 2)
)
def test_delong_equals_scikit_learn_and_the_definition_with_ties(
    pairs: list[tuple[float, int]],
) -> None:
    scores = np.array([s for s, _ in pairs])
    labels = np.array([label for _, label in pairs], dtype=np.float64)
    auc, variance = delong_auc(scores, labels)
    brute_auc, brute_variance = _brute_force_delong(scores, labels)
    assert auc == pytest.approx(roc_auc_score(labels, scores), abs=TOL)
    assert auc == pytest.approx(brute_auc, abs=TOL)
    assert variance == pytest.approx(brute_variance, abs=TOL)


def test_delong_auc_equals_roc_auc_with_many_ties() -> None:
    rng = np.random.default_rng(3)
    scores, labels = _window(rng, 2000, informative=True)
    scores = np.round(scores, 1)  # eleven distinct values
    auc, variance = delong_auc(scores, labels)
    assert auc == pytest.approx(roc_auc_score(labels, scores), abs=TOL)
    assert variance == pytest.approx(_brute_force_delong(scores, labels)[1], abs=TOL)


def test_delong_variance_agrees_with_a_stratified_bootstrap() -> None:
    """DeLong's variance holds the class sizes fixed, so the bootstrap resamples within each.

    Each resample's AUC counts negatives below each positive by binary search: no code shared
    with delong_auc. Across seeds the ratio stays within about 6 % of 1.
    """
    rng = np.random.default_rng(11)
    scores, labels = _window(rng, 400, informative=True)
    _, variance = delong_auc(scores, labels)
    positive, negative = scores[labels == 1], scores[labels == 0]
    aucs = [
        _auc_by_counting(rng.choice(positive, len(positive)), rng.choice(negative, len(negative)))
        for _ in range(2000)
    ]
    assert float(np.var(aucs, ddof=1)) == pytest.approx(variance, rel=0.15)


def _auc_by_counting(positive: np.ndarray, negative: np.ndarray) -> float:
    """Share of (positive, negative) pairs in order, a tie counting half."""
    ordered = np.sort(negative)
    below = np.searchsorted(ordered, positive, "left")
    not_above = np.searchsorted(ordered, positive, "right")
    return float((below + not_above).sum() / (2 * len(positive) * len(negative)))


@pytest.mark.parametrize(
    ("scores", "labels"),
    [
        ([0.1, 0.2, 0.3], [0, 0, 0]),  # one class
        ([0.1, 0.2, 0.3, 0.4], [0, 1, 1, 1]),  # a single negative
        ([0.1, 0.2, 0.3, 0.4, 0.5], [0, 0, 1, 1, 2]),  # a label that is not 0 or 1
        ([0.1, 0.2, 0.3, 0.4], [0, 0, 1]),  # misaligned
    ],
)
def test_delong_rejects_what_it_cannot_estimate(scores: list[float], labels: list[int]) -> None:
    with pytest.raises(ValueError):
        delong_auc(np.array(scores), np.array(labels, dtype=np.float64))


def test_a_clearly_better_canary_is_better_and_the_reverse_worse() -> None:
    rng = np.random.default_rng(5)
    good = classifier_quality(*_window(rng, 3000, informative=True), threshold=0.5)
    noise = classifier_quality(*_window(rng, 3000, informative=False), threshold=0.5)
    better = compare_auc(good, noise)
    assert better.verdict == "better"
    assert better.low is not None
    assert better.low > 0
    assert good.auc is not None
    assert noise.auc is not None
    assert better.difference == pytest.approx(good.auc - noise.auc, abs=TOL)
    assert better.test == COMPARISON_TEST
    assert compare_auc(noise, good).verdict == "worse"


def test_two_equal_models_on_small_slices_are_inconclusive() -> None:
    rng = np.random.default_rng(8)
    canary = classifier_quality(*_window(rng, 200, informative=True), threshold=0.5)
    primary = classifier_quality(*_window(rng, 200, informative=True), threshold=0.5)
    comparison = compare_auc(canary, primary)
    assert comparison.verdict == "inconclusive"
    assert comparison.low is not None
    assert comparison.high is not None
    assert comparison.low < 0 < comparison.high


def test_a_missing_auc_is_inconclusive() -> None:
    rng = np.random.default_rng(9)
    good = classifier_quality(*_window(rng, 500, informative=True), threshold=0.5)
    one_class = classifier_quality(np.array([0.2, 0.9]), np.ones(2), threshold=0.5)
    for canary, primary in ((good, one_class), (one_class, good)):
        assert compare_auc(canary, primary).as_json() == {
            "difference": None,
            "low": None,
            "high": None,
            "verdict": "inconclusive",
            "test": COMPARISON_TEST,
        }


def test_zero_variance_decides_by_sign_and_ties_stay_inconclusive() -> None:
    labels = np.array([1.0, 1, 0, 0])
    perfect = classifier_quality(np.array([0.9, 0.8, 0.2, 0.1]), labels, 0.5)
    all_tied = classifier_quality(np.full(4, 0.5), labels, 0.5)
    assert (perfect.auc_variance, all_tied.auc_variance) == (0.0, 0.0)
    assert compare_auc(perfect, all_tied).verdict == "better"
    assert compare_auc(all_tied, perfect).verdict == "worse"
    assert compare_auc(perfect, perfect).verdict == "inconclusive"


@pytest.mark.parametrize("n", [1, 2, 7, 500])
def test_regressor_figures_equal_scikit_learns(n: int) -> None:
    rng = np.random.default_rng(n)
    labels = rng.normal(10.0, 3.0, size=n)
    predictions = labels + rng.normal(0.0, 1.0, size=n)
    quality = regressor_quality(predictions, labels)
    assert quality.labelled == n
    assert quality.mae == pytest.approx(mean_absolute_error(labels, predictions), abs=TOL)
    rmse = math.sqrt(mean_squared_error(labels, predictions))
    assert quality.rmse == pytest.approx(rmse, abs=TOL)
    assert all(type(v) in {int, float} for v in quality.as_json().values())


def test_an_empty_regressor_window_has_no_figures() -> None:
    assert regressor_quality(np.array([]), np.array([])).as_json() == {
        "labelled": 0,
        "mae": None,
        "rmse": None,
    }


# --- the paired comparison (candidate and primary on the same rows) ---


def _paired_variance_by_definition(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> float:
    """DeLong's paired variance from the O(m n) kernel, for a check of the midrank version."""

    def components(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos, neg = s[y == 1], s[y == 0]
        kernel = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return kernel.mean(axis=1), kernel.mean(axis=0)

    a10, a01 = components(a)
    b10, b01 = components(b)
    return float(np.var(a10 - b10, ddof=1) / len(a10) + np.var(a01 - b01, ddof=1) / len(a01))


def test_the_paired_interval_is_delongs_on_the_same_rows() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.3).astype(float)
    a = np.round(y + rng.normal(size=400), 1)  # ties on purpose
    b = np.round(0.5 * y + rng.normal(size=400), 1)
    comparison = compare_paired_auc(a, b, y)
    expected = roc_auc_score(y, a) - roc_auc_score(y, b)
    assert comparison.difference == pytest.approx(expected, abs=1e-12)
    half = Z_95 * math.sqrt(_paired_variance_by_definition(a, b, y))
    assert comparison.low == pytest.approx(expected - half, abs=1e-12)
    assert comparison.high == pytest.approx(expected + half, abs=1e-12)
    assert comparison.verdict == "better"
    assert compare_paired_auc(b, a, y).verdict == "worse"


def test_the_paired_interval_is_narrower_than_the_unpaired_for_correlated_models() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random(2000) < 0.2).astype(float)
    shared = y + rng.normal(size=2000)
    a, b = (1 / (1 + np.exp(-(shared + 0.1 * rng.normal(size=2000)))) for _ in range(2))
    paired = compare_paired_auc(a, b, y)
    unpaired = compare_auc(classifier_quality(a, y, 0.5), classifier_quality(b, y, 0.5))
    assert paired.high is not None and paired.low is not None
    assert unpaired.high is not None and unpaired.low is not None
    assert paired.high - paired.low < (unpaired.high - unpaired.low) / 3


def test_a_model_against_itself_is_inconclusive() -> None:
    y = np.array([0, 1, 0, 1, 1, 0], dtype=float)
    scores = np.array([0.1, 0.9, 0.3, 0.6, 0.4, 0.2])
    comparison = compare_paired_auc(scores, scores, y)
    assert (comparison.difference, comparison.low, comparison.high) == (0.0, 0.0, 0.0)
    assert comparison.verdict == "inconclusive"
