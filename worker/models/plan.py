"""A column plan: a Pipeline whose first step is a ColumnTransformer, scored with that step's
encoders replaced by dictionary lookups built once per version.

Why: scikit-learn's OneHotEncoder and OrdinalEncoder check each value of each batch in Python
(an `is_scalar_nan` per cell), about 30 µs per 39-field event for a one-hot Pipeline, where a
lookup costs well under one. The plan builds the matrix the ColumnTransformer would (the same
columns in the same order, sparse where it is sparse) from the decoded rows and hands it to the
Pipeline's later steps; a part it has no lookup for (an imputer and scaler, a hasher) is run by
scikit-learn on its own columns. `column_plan` returns a plan only once it scored probe rows
(known, unseen and missing values) as the Pipeline itself does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

import numpy as np

from worker.models.features import (
    MISSING_KEYS,
    FeatureSchema,
    is_missing,
    known_categories,
    rows_matrix,
)

Block = Any  # a 2-D float array or a scipy CSR matrix
Frames = Callable[[list[str]], Any]  # column names -> those columns of the batch, a DataFrame
Part = Callable[[np.ndarray, Frames], Block]  # (decoded rows, frames) -> its block
AGREEMENT = 1e-12  # largest score difference from the Pipeline's own on the probe rows


def column_plan(
    estimator: Any, schema: FeatureSchema, predict: Callable[[Any], np.ndarray]
) -> Callable[[np.ndarray], np.ndarray] | None:
    """decoded rows -> the later steps' `predict` output, or None where no plan applies or
    it does not agree with the Pipeline (`predict` is the Pipeline's predict_proba/predict)."""
    try:
        plan = _build(estimator, schema)
    except Exception:  # _Unplannable, or a shape of ColumnTransformer not foreseen here
        return None
    if plan is None or not _agrees(plan, predict, schema, estimator):
        return None
    return plan


class _Unplannable(Exception):
    pass


def _build(estimator: Any, schema: FeatureSchema) -> Callable[[np.ndarray], Any] | None:
    steps = getattr(estimator, "steps", None)
    if not steps or len(steps) < 2 or not hasattr(steps[0][1], "transformers_"):
        return None
    transformer, rest = steps[0][1], estimator[1:]
    if getattr(transformer, "_sklearn_output_config", {}).get("transform") not in (None, "default"):
        return None  # its later steps were fitted on a DataFrame of its output
    found = [_part(part, columns, schema) for _, part, columns in transformer.transformers_]
    parts = [part for part in found if part is not None]
    if not any(getattr(part, "lookup", False) for part in parts):
        return None  # nothing to gain
    sparse = bool(transformer.sparse_output_)
    final = rest.predict_proba if hasattr(rest, "predict_proba") else rest.predict

    def score(matrix: np.ndarray) -> Any:
        def frame(names: list[str]) -> Any:
            return schema.frame(matrix, names)

        return final(_stack([part(matrix, frame) for part in parts], sparse))

    return score


def _part(part: Any, columns: Any, schema: FeatureSchema) -> Part | None:
    if isinstance(part, str):
        if part == "drop":
            return None
        raise _Unplannable  # "passthrough" stays a FunctionTransformer once fitted
    names = _column_names(columns, schema)
    if not names:
        return None
    positions = [schema.names.index(name) for name in names]
    kind = type(part).__name__
    if kind == "OneHotEncoder" and _plain_encoder(part) and part.drop_idx_ is None:
        return _one_hot(part, positions)
    if kind == "OrdinalEncoder" and _plain_encoder(part):
        return _ordinal(part, positions)
    numeric = _numeric_steps(part) if schema.select_kinds(names) == {"number"} else None
    if numeric is not None:
        return _numbers(numeric, positions)

    def by_scikit_learn(matrix: np.ndarray, frame: Frames) -> Block:
        return part.transform(frame(names))

    return by_scikit_learn


def _numeric_steps(part: Any) -> list[tuple[np.ndarray | None, np.ndarray | None]] | None:
    """A part made of SimpleImputers (of NaN), StandardScalers and identity
    FunctionTransformers only, as (values to fill NaN with, (mean, scale)) per step; None if
    it holds anything else."""
    steps = [step for _, step in part.steps] if hasattr(part, "steps") else [part]
    plan: list[tuple[np.ndarray | None, np.ndarray | None]] = []
    for step in steps:
        kind = type(step).__name__
        if kind == "FunctionTransformer" and step.func is None:
            continue
        if kind == "SimpleImputer" and _fills_nan(step):
            plan.append((np.asarray(step.statistics_, dtype=np.float64), None))
        elif kind == "StandardScaler":
            plan.append((None, _mean_and_scale(step)))
        else:
            return None
    return plan


def _fills_nan(imputer: Any) -> bool:
    statistics = np.asarray(imputer.statistics_, dtype=np.float64)
    return (
        is_missing(imputer.missing_values)
        and not imputer.add_indicator
        and bool(np.isfinite(statistics).all())  # no column left out for being all NaN
    )


def _mean_and_scale(scaler: Any) -> np.ndarray:
    width = scaler.n_features_in_
    mean = scaler.mean_ if scaler.with_mean else np.zeros(width)
    scale = scaler.scale_ if scaler.with_std else np.ones(width)
    return np.vstack([mean, scale]).astype(np.float64)


def _numbers(
    steps: list[tuple[np.ndarray | None, np.ndarray | None]], positions: list[int]
) -> Part:
    """The imputer's fill and the scaler's (x - mean) / scale, as scikit-learn computes them."""

    def numbers(matrix: np.ndarray, frame: Frames) -> Block:
        block = matrix[:, positions].astype(np.float64)
        for fill, mean_scale in steps:
            if fill is not None:
                block = np.where(np.isnan(block), fill, block)
            elif mean_scale is not None:
                block = (block - mean_scale[0]) / mean_scale[1]
        return block

    numbers.lookup = True  # type: ignore[attr-defined]
    return numbers


def _column_names(columns: Any, schema: FeatureSchema) -> list[str]:
    if not isinstance(columns, str | list | tuple | np.ndarray):
        raise _Unplannable  # a slice, a position, a callable
    names = [columns] if isinstance(columns, str) else list(columns)
    if not all(isinstance(name, str) and name in schema.names for name in names):
        raise _Unplannable  # by position or by mask: leave it to the Pipeline
    return names


def _plain_encoder(encoder: Any) -> bool:
    """No infrequent-category grouping, a float output, unknowns handled without raising."""
    return (
        not getattr(encoder, "_infrequent_enabled", False)
        and encoder.handle_unknown in ("ignore", "infrequent_if_exist", "use_encoded_value")
        and np.dtype(encoder.dtype).kind == "f"
    )


Lookup = dict[object, int]


def _lookups(encoder: Any, missing_code: int | None = None) -> list[Lookup]:
    """Per column: {category: its index}, and for a missing value (None, as rows_matrix holds
    it, or the np.nan object, found by identity) the missing category's index, or
    `missing_code` (the encoder's own code for it) where given; a value found nowhere is -1
    (never seen)."""
    lookups = []
    for categories in encoder.categories_:
        values = list(categories)
        index: Lookup = {v: i for i, v in enumerate(values) if isinstance(v, str)}
        fitted_missing = [i for i, v in enumerate(values) if is_missing(v)]
        if len(index) + len(fitted_missing) != len(values):
            raise _Unplannable  # categories that are not text
        if fitted_missing:
            code = fitted_missing[0] if missing_code is None else missing_code
            index.update(dict.fromkeys(MISSING_KEYS, code))
        lookups.append(index)
    return lookups


def _codes(column: np.ndarray, lookup: Lookup) -> np.ndarray:
    """Each value's code, -1 for one never seen (and a missing value no category holds)."""
    codes = np.fromiter(map(lookup.get, column, repeat(-1)), dtype=np.intp, count=len(column))
    unseen = np.flatnonzero(codes < 0)
    if len(unseen) and None in lookup:  # a NaN that is not the np.nan object itself
        for row in unseen[[is_missing(column[r]) for r in unseen]]:
            codes[row] = lookup[None]
    return codes


def _one_hot(encoder: Any, positions: list[int]) -> Part:
    from scipy import sparse

    lookups = _lookups(encoder)
    widths = [len(c) for c in encoder.categories_]
    offsets = np.cumsum([0, *widths[:-1]])
    width = int(sum(widths))
    dtype = np.dtype(encoder.dtype)

    def one_hot(matrix: np.ndarray, frame: Frames) -> Block:
        rows = len(matrix)
        codes = np.stack(
            [_codes(matrix[:, p], lookup) for p, lookup in zip(positions, lookups, strict=True)],
            axis=1,
        )
        present = codes >= 0
        row_index = np.broadcast_to(np.arange(rows)[:, None], codes.shape)[present]
        column_index = (codes + offsets)[present]
        ones = np.ones(len(row_index), dtype=dtype)
        block = sparse.csr_matrix((ones, (row_index, column_index)), shape=(rows, width))
        return block if encoder.sparse_output else block.toarray()

    one_hot.lookup = True  # type: ignore[attr-defined]
    return one_hot


_FITTED_MISSING = -2  # an ordinal code's stand-in for encoded_missing_value


def _ordinal(encoder: Any, positions: list[int]) -> Part:
    lookups = _lookups(encoder, _FITTED_MISSING)
    unknown = float(encoder.unknown_value) if encoder.unknown_value is not None else np.nan
    missing = float(encoder.encoded_missing_value)

    def ordinal(matrix: np.ndarray, frame: Frames) -> Block:
        block = np.empty((len(matrix), len(positions)), dtype=np.dtype(encoder.dtype))
        for j, (p, lookup) in enumerate(zip(positions, lookups, strict=True)):
            codes = _codes(matrix[:, p], lookup)
            column = codes.astype(block.dtype)
            column[codes == -1] = unknown  # a missing value never fitted is unknown too
            column[codes == _FITTED_MISSING] = missing
            block[:, j] = column
        return block

    ordinal.lookup = True  # type: ignore[attr-defined]
    return ordinal


def _stack(blocks: Sequence[Block], sparse_output: bool) -> Any:
    from scipy import sparse

    arrays: list[Any] = [
        b if sparse.issparse(b) else np.asarray(b, dtype=np.float64) for b in blocks
    ]
    if sparse_output:
        return sparse.hstack(arrays).tocsr()
    return np.hstack([b.toarray() if sparse.issparse(b) else b for b in arrays])


def _agrees(
    plan: Callable[[np.ndarray], Any],
    predict: Callable[[Any], np.ndarray],
    schema: FeatureSchema,
    estimator: Any,
) -> bool:
    """The plan and the Pipeline on probe rows: each known category, one never seen, and
    missing values where the version takes them."""
    rows = _probe_rows(schema, estimator)
    try:
        ours = np.asarray(plan(rows), dtype=np.float64)
        theirs = np.asarray(predict(schema.frame(rows)), dtype=np.float64)
    except Exception:
        return False
    return bool(ours.shape == theirs.shape and np.all(np.abs(ours - theirs) <= AGREEMENT))


def _probe_rows(schema: FeatureSchema, estimator: Any) -> np.ndarray:
    known = known_categories(estimator)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        row: list[object] = []
        for name, kind in zip(schema.names, schema.kinds, strict=True):
            if schema.accepts_missing and i % 6 == 5:
                row.append(None)
            elif kind == "category":
                values = known.get(name) or [""]
                row.append(f"never-seen-{i}" if i % 4 == 3 else values[i % len(values)])
            else:
                row.append(float(rng.normal()))
        rows.append(row)
    return rows_matrix(schema, rows)
