"""Online quality of a model version from its labelled predictions, and a canary's verdict.

A classifier's window of (score, label) pairs gives ROC AUC with a 95 % DeLong interval, log
loss, Brier score, calibration (mean score over positive rate) and accuracy, precision and
recall at the decision threshold; a regressor's gives MAE and RMSE. Every point figure comes
from scikit-learn; only the AUC variance (DeLong's method, with midranks, O(n log n)) is written
here, because scikit-learn offers no interval for the AUC and a canary's verdict needs one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    precision_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

Verdict = Literal["better", "worse", "inconclusive"]
COMPARISON_TEST = "DeLong AUC difference, unpaired, 95 % interval"
PAIRED_TEST = "DeLong AUC difference, paired (same rows), 95 % interval"
Z_95 = 1.959963984540054  # two-sided 95 % quantile of the standard normal


@dataclass(frozen=True)
class ClassifierQuality:
    labelled: int
    positives: int
    invalid_labels: int
    auc: float | None
    auc_low: float | None
    auc_high: float | None
    auc_variance: float | None
    logloss: float | None
    brier: float | None
    mean_score: float | None
    positive_rate: float | None
    calibration: float | None
    accuracy: float | None
    precision: float | None
    recall: float | None

    def as_json(self) -> dict[str, float | int | None]:
        """Every field by name, as plain Python numbers that any JSON encoder writes exactly."""
        return asdict(self)


@dataclass(frozen=True)
class RegressorQuality:
    labelled: int
    mae: float | None
    rmse: float | None

    def as_json(self) -> dict[str, float | int | None]:
        """Every field by name, as plain Python numbers that any JSON encoder writes exactly."""
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    difference: float | None
    low: float | None
    high: float | None
    verdict: Verdict
    test: str = COMPARISON_TEST

    def as_json(self) -> dict[str, object]:
        """Every field by name, the test included: a report says how its verdict was reached."""
        return asdict(self)


def classifier_quality(
    scores: np.ndarray, labels: np.ndarray, threshold: float
) -> ClassifierQuality:
    """Every figure of one window; pairs whose label is not exactly 0 or 1 are counted, not used."""
    _check_pairs(scores, labels)
    valid = (labels == 0) | (labels == 1)
    scores, truth = scores[valid], labels[valid].astype(np.int64)
    labelled, positives = len(truth), int(truth.sum())
    invalid = len(labels) - labelled
    if labelled == 0:
        return ClassifierQuality(0, 0, invalid, *([None] * 12))  # no figure of no pairs
    auc, auc_low, auc_high, auc_variance = _auc_figures(scores, truth)
    predicted = (scores >= threshold).astype(np.int64)
    mean_score, positive_rate = float(np.mean(scores)), positives / labelled
    return ClassifierQuality(
        labelled=labelled,
        positives=positives,
        invalid_labels=invalid,
        auc=auc,
        auc_low=auc_low,
        auc_high=auc_high,
        auc_variance=auc_variance,
        logloss=float(log_loss(truth, scores, labels=[0, 1])),
        brier=float(brier_score_loss(truth, scores, pos_label=1)),
        mean_score=mean_score,
        positive_rate=positive_rate,
        calibration=mean_score / positive_rate if positive_rate > 0 else None,
        accuracy=float(accuracy_score(truth, predicted)),
        precision=float(precision_score(truth, predicted, zero_division=0)),
        recall=float(recall_score(truth, predicted, zero_division=0)),
    )


def regressor_quality(predictions: np.ndarray, labels: np.ndarray) -> RegressorQuality:
    """MAE and RMSE of one window; None for an empty one, where scikit-learn would raise."""
    _check_pairs(predictions, labels)
    if len(labels) == 0:
        return RegressorQuality(0, None, None)
    return RegressorQuality(
        labelled=len(labels),
        mae=float(mean_absolute_error(labels, predictions)),
        rmse=float(root_mean_squared_error(labels, predictions)),
    )


def delong_auc(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(AUC, DeLong variance) from midranks (Sun and Xu 2014), needing two of each class."""
    v10, v01 = _structural_components(scores, labels)
    auc = float(np.mean(v10))
    variance = float(np.var(v10, ddof=1) / len(v10) + np.var(v01, ddof=1) / len(v01))
    return auc, variance


def compare_paired_auc(
    candidate: np.ndarray, baseline: np.ndarray, labels: np.ndarray
) -> Comparison:
    """Candidate AUC minus baseline AUC when both scored the same rows, with DeLong's paired
    95 % interval: the variance of the difference of the structural components, which the
    two models' correlation on shared rows makes far narrower than the unpaired interval."""
    _check_pairs(baseline, labels)
    a10, a01 = _structural_components(candidate, labels)
    b10, b01 = _structural_components(baseline, labels)
    difference = float(np.mean(a10) - np.mean(b10))
    variance = float(np.var(a10 - b10, ddof=1) / len(a10) + np.var(a01 - b01, ddof=1) / len(a01))
    half = Z_95 * math.sqrt(variance)
    low, high = difference - half, difference + half
    return Comparison(difference, low, high, _verdict(low, high), PAIRED_TEST)


def _structural_components(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: v10[i], the share of negatives below positive i (ties
    count half); v01[j], the share of positives above negative j. Both average to the AUC."""
    _check_pairs(scores, labels)
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 or 1")
    positive, negative = scores[labels == 1], scores[labels == 0]
    m, n = len(positive), len(negative)
    if min(m, n) < 2:  # a structural component's sample variance needs two members
        raise ValueError(f"DeLong needs at least 2 positives and 2 negatives, got {m} and {n}")
    ranks = _midranks(np.concatenate([positive, negative]))
    v10 = (ranks[:m] - _midranks(positive)) / n
    v01 = 1.0 - (ranks[m:] - _midranks(negative)) / m
    return v10, v01


def compare_auc(canary: ClassifierQuality, primary: ClassifierQuality) -> Comparison:
    """Canary AUC minus primary AUC, 95 % interval; disjoint traffic makes them independent."""
    if canary.auc is None or primary.auc is None:
        return Comparison(None, None, None, "inconclusive")
    difference = canary.auc - primary.auc
    if canary.auc_variance is None or primary.auc_variance is None:
        return Comparison(difference, None, None, "inconclusive")
    # With zero variance (e.g. both perfect) the interval is the point and the sign decides.
    half = Z_95 * math.sqrt(canary.auc_variance + primary.auc_variance)
    low, high = difference - half, difference + half
    return Comparison(difference, low, high, _verdict(low, high))


def _auc_figures(
    scores: np.ndarray, truth: np.ndarray
) -> tuple[float | None, float | None, float | None, float | None]:
    """AUC from scikit-learn, with DeLong's interval when each class has two members."""
    positives = int(truth.sum())
    if positives in {0, len(truth)}:
        return None, None, None, None
    auc = float(roc_auc_score(truth, scores))
    if min(positives, len(truth) - positives) < 2:
        return auc, None, None, None
    _, variance = delong_auc(scores, truth)
    half = Z_95 * math.sqrt(variance)
    return auc, max(0.0, auc - half), min(1.0, auc + half), variance


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given the mean of the ranks they span."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]


def _verdict(low: float, high: float) -> Verdict:
    """Better or worse only when the whole interval lies on one side of zero."""
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "inconclusive"


def _check_pairs(values: np.ndarray, labels: np.ndarray) -> None:
    """Pairs come as two aligned 1-D arrays; anything else is a caller's bug, not data."""
    if values.ndim != 1 or values.shape != labels.shape:
        raise ValueError(f"need two 1-D arrays of one length, got {values.shape}, {labels.shape}")
