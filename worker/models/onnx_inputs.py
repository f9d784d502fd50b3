"""What an ONNX graph takes, and how a worker's decoded rows become it.

An estimator fitted on an array takes one float32 matrix. One fitted on a DataFrame takes one
input per column, named as the column (skl2onnx then selects a ColumnTransformer's columns by
name, as scikit-learn does): a `[N, 1]` float32 tensor for a number, NaN where missing, and a
`[N, 1]` string tensor for a category. A missing category is given as the text skl2onnx keys
the encoders' missing category by (`str()` of it: "nan", or "None" for encoders fitted on
None); that text sent as a category is given as UNSEEN_TEXT, which no encoder knows, as
scikit-learn would take it (publish refuses a version fitted on that text as a category).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from worker.models.features import FeatureSchema

Feeds = Callable[[np.ndarray], dict[str, np.ndarray]]
MATRIX_INPUT = "input"  # the single input of a graph for an estimator fitted on an array
UNSEEN_TEXT = "\x00unseen"  # a category no encoder was fitted on


def missing_text(none_for_missing: bool) -> str:
    return str(None) if none_for_missing else str(np.nan)


def input_types(schema: FeatureSchema, per_column: bool) -> list[tuple[str, Any]]:
    """skl2onnx's initial types for this schema."""
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    if not per_column:
        return [(MATRIX_INPUT, FloatTensorType([None, len(schema.names)]))]
    return [
        (name, StringTensorType([None, 1]) if kind == "category" else FloatTensorType([None, 1]))
        for name, kind in zip(schema.names, schema.kinds, strict=True)
    ]


def feeds_for(inputs: Sequence[str], schema: FeatureSchema | None, missing: str) -> Feeds:
    """The session's feeds from a decoded matrix (float64, or object with None where
    missing): one matrix, or one column per input when the inputs are the schema's
    features, looked up by position once, here."""
    if schema is None or list(inputs) != list(schema.names):
        (name,) = inputs

        def matrix_feeds(matrix: np.ndarray) -> dict[str, np.ndarray]:
            return {name: matrix.astype(np.float32, copy=False)}

        return matrix_feeds
    kinds = schema.kinds
    numbers = [i for i, kind in enumerate(kinds) if kind == "number"]
    categories = [i for i, kind in enumerate(kinds) if kind == "category"]
    number_names = [schema.names[i] for i in numbers]
    category_names = [schema.names[i] for i in categories]

    def column_feeds(matrix: np.ndarray) -> dict[str, np.ndarray]:
        feeds: dict[str, np.ndarray] = {}
        if numbers:  # one conversion for all the number columns: None becomes NaN
            values = matrix[:, numbers].astype(np.float32)
            feeds.update((name, values[:, j : j + 1]) for j, name in enumerate(number_names))
        if categories:
            texts = matrix[:, categories]  # a copy: the texts are changed here only
            texts[np.equal(texts, missing)] = UNSEEN_TEXT
            texts[np.equal(texts, None)] = missing  # type: ignore[call-overload]
            feeds.update((name, texts[:, j : j + 1]) for j, name in enumerate(category_names))
        return feeds

    return column_feeds
