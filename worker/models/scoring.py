"""Turn an estimator into one vectorised score function: decoded rows in, one score per row
out. The rows reach the estimator in the form its schema names (an array or a DataFrame)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

import numpy as np

from worker.models.features import FeatureSchema, fitted_with_none
from worker.models.plan import column_plan

ModelKind = Literal["classifier", "regressor"]
ScoreFn = Callable[[np.ndarray], np.ndarray]

# Estimators fitted on a DataFrame warn on every call with a plain array; the worker already
# matched columns by name, so the warning says nothing here.
_FEATURE_NAMES_WARNING = "X does not have valid feature names"


def score_function(
    estimator: Any,
    kind: ModelKind,
    schema: FeatureSchema | None = None,
    *,
    checked: bool = False,
) -> ScoreFn:
    """A classifier scores the positive-class probability; a regressor its prediction.
    Without a schema the rows are a float matrix, given as they are. `checked`: scikit-learn
    checks the rows itself (publish's probe: an estimator that refuses NaN must say so)."""
    from sklearn import config_context  # at model load, so the registry's commands start fast

    predict = estimator.predict_proba if kind == "classifier" else estimator.predict
    if schema is not None and schema.categories:
        schema = replace(schema, none_for_missing=fitted_with_none(estimator))
    plan = column_plan(estimator, schema, predict) if schema and schema.form == "frame" else None

    def score(matrix: np.ndarray) -> np.ndarray:
        # Rows were checked while decoding (finite, NaN only where the version accepts
        # missing values): skip scikit-learn's second check. A step that makes NaN or inf
        # from them (a log of a negative number) would warn on every batch: the scores are
        # checked instead, and such a row dead-lettered (stream/scoring.py).
        with (
            config_context(assume_finite=not checked),
            warnings.catch_warnings(),
            np.errstate(all="ignore"),
        ):
            warnings.filterwarnings("ignore", message=_FEATURE_NAMES_WARNING)
            if plan is not None:
                output = np.asarray(plan(matrix), dtype=np.float64)
            else:
                rows = schema.model_input(matrix) if schema is not None else matrix
                output = np.asarray(predict(rows), dtype=np.float64)
        return output[:, 1] if kind == "classifier" else output.reshape(len(matrix))

    return score
