"""A candidate version, fitted on the training window and judged on its newest rows.

The window is split by event time: the oldest rows train, the newest `holdout_share` judge, so
the candidate is measured as it will be used, on data later than any it saw. On the holdout it
is compared with the primary (the active version scoring the same rows): AUC with DeLong's
paired interval, log loss and calibration. It is published only if the interval of the AUC
difference lies above zero and its log loss is no worse: with no change in the data, a clone
refitted on fresh rows is as good as the primary, the verdict inconclusive, and nothing is
published.

Two methods (`retrain_method`): `refit` fits a clone of the active estimator (same class and
parameters, `sklearn.base.clone`) on the training rows alone: it forgets what the window does
not hold, which is what a drift needs, and costs a full fit. `partial_fit` updates a copy of the
active model with the training rows, where the estimator supports it (SGDClassifier, the naive
Bayes classifiers...): cheap, and it keeps what the model knew, so it follows a drift only as
fast as its learning rate lets it. An estimator without `partial_fit` is refitted.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.lifecycle.quality import ClassifierQuality, Comparison, classifier_quality
from worker.lifecycle.quality import compare_paired_auc as compare
from worker.lifecycle.training_rows import Matrix
from worker.models.features import FeatureSchema
from worker.models.scoring import score_function


class Rejection:
    """Why a candidate was not published (the metric's `reason` label)."""

    TOO_FEW_ROWS = "too_few_rows"  # fewer usable rows than retrain_min_rows
    ONE_CLASS = "one_class"  # the training rows or the holdout lack clicks or non-clicks
    NOT_BETTER = "not_better"  # the AUC difference's interval does not lie above zero
    WORSE_LOGLOSS = "worse_logloss"  # better AUC, worse log loss
    NO_ESTIMATOR = "no_estimator"  # the active version cannot be cloned (ONNX only, regressor)
    FIT_FAILED = "fit_failed"  # the estimator raised while fitting
    PUBLISH_REFUSED = "publish_refused"  # the registry refused it (a canary runs, a check failed)

    @classmethod
    def codes(cls) -> list[str]:
        return [value for name, value in vars(cls).items() if name.isupper()]


@dataclass(frozen=True)
class Split:
    train_x: np.ndarray
    train_y: np.ndarray
    holdout_x: np.ndarray
    holdout_y: np.ndarray
    train_span: tuple[float, float]  # event times of the first and last training row
    holdout_span: tuple[float, float]


@dataclass(frozen=True)
class Holdout:
    rows: int
    candidate: ClassifierQuality
    primary: ClassifierQuality
    comparison: Comparison

    def as_json(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "candidate": _figures(self.candidate),
            "primary": _figures(self.primary),
            "comparison": self.comparison.as_json(),
        }


def split_by_time(matrix: Matrix, holdout_share: float) -> Split | None:
    """The oldest rows to train, the newest `holdout_share` to judge (None: a side lacks a
    class, so there is nothing to fit or no AUC to judge by)."""
    order = np.argsort(matrix.ts, kind="stable")
    x, y, ts = matrix.x[order], matrix.y[order], matrix.ts[order]
    cut = len(y) - max(1, round(len(y) * holdout_share))
    if cut < 1 or not (_both_classes(y[:cut]) and _both_classes(y[cut:])):
        return None
    return Split(
        x[:cut],
        y[:cut],
        x[cut:],
        y[cut:],
        (float(ts[0]), float(ts[cut - 1])),
        (float(ts[cut]), float(ts[-1])),
    )


def fit_candidate(
    active: Any, method: str, x: np.ndarray, y: np.ndarray, schema: FeatureSchema
) -> tuple[Any, str]:
    """The candidate and the method used (partial_fit falls back to refit where the estimator
    has none), fitted on the rows in the form the active version takes them (a Pipeline fitted
    on a DataFrame gets one, with its category and missing values)."""
    rows = schema.model_input(x)
    if method == "partial_fit" and hasattr(active, "partial_fit"):
        updated = copy.deepcopy(active)
        updated.partial_fit(rows, y)
        return updated, "partial_fit"
    from sklearn.base import clone

    return clone(active).fit(rows, y), "refit"


def judge_on_holdout(
    candidate: Any, primary: Any, split: Split, threshold: float, schema: FeatureSchema
) -> tuple[Holdout, str | None]:
    """The holdout figures, and why the candidate is not published (None: it is better)."""
    x, y = split.holdout_x, split.holdout_y
    ours = score_function(candidate, "classifier", schema)(x)
    theirs = score_function(primary, "classifier", schema)(x)
    holdout = Holdout(
        len(y),
        classifier_quality(ours, y, threshold),
        classifier_quality(theirs, y, threshold),
        compare(ours, theirs, y),
    )
    if holdout.comparison.verdict != "better":
        return holdout, Rejection.NOT_BETTER
    ours_loss, theirs_loss = holdout.candidate.logloss, holdout.primary.logloss
    if ours_loss is not None and theirs_loss is not None and ours_loss > theirs_loss:
        return holdout, Rejection.WORSE_LOGLOSS
    return holdout, None


def _both_classes(y: np.ndarray) -> bool:
    positives = int(np.sum(y == 1))
    return 2 <= positives <= len(y) - 2


def _figures(quality: ClassifierQuality) -> dict[str, object]:
    keep = ("labelled", "positives", "auc", "auc_low", "auc_high", "logloss", "calibration")
    return {name: value for name, value in quality.as_json().items() if name in keep}
