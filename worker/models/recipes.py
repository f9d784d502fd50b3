"""Helpers that published Pipelines may hold: a joblib artifact refers to a function by its
module and name, so a function a worker is to call must be importable in every worker. These
ship with the worker for that reason.

The hashing trick (README, "Categorical features"): one token per category column and value,

    make_pipeline(FunctionTransformer(hashed_tokens), FeatureHasher(2**18, input_type="string"))

so a model keeps a fixed width however many categories the pipeline meets, and a value it has
never seen is one more hashed token rather than an error.
"""

from __future__ import annotations

from typing import Any

from worker.models.features import is_missing


def hashed_tokens(frame: Any) -> list[list[str]]:
    """Each row of a DataFrame as `column=value` tokens; a missing value (NaN, None) gives no
    token, so missing is the absence of every value of that column."""
    columns = [str(name) for name in frame.columns]
    return [
        [
            f"{name}={value}"
            for name, value in zip(columns, row, strict=True)
            if not is_missing(value)
        ]
        for row in frame.itertuples(index=False, name=None)
    ]
