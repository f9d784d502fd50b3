"""Turn an estimator into one vectorised score function: matrix in, one score per row out."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

ModelKind = Literal["classifier", "regressor"]
ScoreFn = Callable[[np.ndarray], np.ndarray]

# Estimators fitted on a DataFrame warn on every call with a plain array; the worker already
# matched columns by name, so the warning says nothing here.
_FEATURE_NAMES_WARNING = "X does not have valid feature names"


def score_function(estimator: Any, kind: ModelKind) -> ScoreFn:
    """A classifier scores the positive-class probability; a regressor its prediction."""
    from sklearn import config_context  # at model load, so the registry's commands start fast

    predict = estimator.predict_proba if kind == "classifier" else estimator.predict

    def score(matrix: np.ndarray) -> np.ndarray:
        # Rows were checked finite while decoding: skip scikit-learn's second check.
        with config_context(assume_finite=True), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_FEATURE_NAMES_WARNING)
            output = np.asarray(predict(matrix), dtype=np.float64)
        return output[:, 1] if kind == "classifier" else output.reshape(len(matrix))

    return score
