"""The rows the ONNX fidelity check scores with both runtimes (compiled.py), decoded as a
worker decodes them: the reference rows when given, else rows drawn where the model decides.
For versions with categories or missing values, some of them again with categories no encoder
has seen (the text ONNX reads as missing among them), and again with values missing where the
version takes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from worker.models.features import (
    FeatureSchema,
    columns_refusing_unknown,
    fitted_with_none,
    known_categories,
)
from worker.models.onnx_inputs import missing_text

PROBE_ROWS = 2000  # rows the fidelity check and the timings score
VARIANT_ROWS = 500  # of them, copied with unseen categories, and with missing values
DEFAULT_RANGE = 3.0  # without ranges from the model: features are taken as standard-scaled
_CHANGED = 0.3  # the share of a variant's values made unseen, or missing


def probe_rows(estimator: Any, schema: FeatureSchema, reference: np.ndarray | None) -> np.ndarray:
    """The reference rows when given (the first PROBE_ROWS), else rows drawn within each
    number's range as the model shows it (`feature_ranges`) and among each category's known
    values; then VARIANT_ROWS of them with some categories unseen (not in columns whose
    encoder refuses unseen values), and VARIANT_ROWS with some values missing where the
    version takes them."""
    rng = np.random.default_rng(0)
    if reference is not None and len(reference):
        rows = reference[:PROBE_ROWS]
    else:
        rows = _drawn_rows(estimator, schema, rng)
    if schema.plain:
        return np.asarray(rows, dtype=np.float64)
    variants = [rows]
    refusing = columns_refusing_unknown(estimator)
    unseen = [(j, name) for j, name in _category_columns(schema) if name not in refusing]
    if unseen:
        read_as_missing = missing_text(fitted_with_none(estimator))
        variants.append(_with_unseen(rows[:VARIANT_ROWS], unseen, read_as_missing, rng))
    if schema.accepts_missing:
        variants.append(_with_missing(rows[:VARIANT_ROWS], rng))
    return np.concatenate(variants)


def _drawn_rows(estimator: Any, schema: FeatureSchema, rng: np.random.Generator) -> np.ndarray:
    low, high = feature_ranges(estimator, len(schema.names))
    numbers = rng.uniform(low, high, size=(PROBE_ROWS, len(schema.names)))
    if schema.all_numbers:
        return numbers
    rows = numbers.astype(object)
    known = known_categories(estimator)
    for j, name in _category_columns(schema):
        values = known.get(name) or [f"{name}-{k}" for k in range(20)]
        rows[:, j] = np.asarray(values, dtype=object)[rng.integers(len(values), size=PROBE_ROWS)]
    return rows


def _with_unseen(
    rows: np.ndarray,
    columns: list[tuple[int, str]],
    read_as_missing: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """The rows with some categories never seen: the first of each column is the text an
    ONNX graph keys its missing category by (a worker must give it as unseen, not missing)."""
    unseen = rows.copy()
    for j, name in columns:
        chosen = np.flatnonzero(rng.random(len(unseen)) < _CHANGED)
        unseen[chosen, j] = [f"unseen-{name}-{i}" for i in chosen]
        unseen[chosen[:1], j] = read_as_missing
    return unseen


def _with_missing(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    missing = rows.copy()
    missing[rng.random(missing.shape) < _CHANGED] = np.nan if rows.dtype != object else None
    return missing


def _category_columns(schema: FeatureSchema) -> Iterator[tuple[int, str]]:
    return ((schema.names.index(name), name) for name in schema.categories)


def feature_ranges(estimator: Any, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's range as the model shows it: a leading StandardScaler's mean ± 3
    standard deviations; else a tree's split thresholds, widened by a tenth, where the trees
    see the features as given (not a ColumnTransformer's encoded columns); else
    ±DEFAULT_RANGE."""
    low = np.full(n_features, -DEFAULT_RANGE)
    high = np.full(n_features, DEFAULT_RANGE)
    steps = [step for _, step in getattr(estimator, "steps", [])] or [estimator]
    scaler, final = steps[0], steps[-1]
    if hasattr(scaler, "mean_") and hasattr(scaler, "scale_") and len(scaler.mean_) == n_features:
        mean = np.asarray(scaler.mean_, dtype=np.float64)
        scale = np.asarray(scaler.scale_, dtype=np.float64)
        return mean - DEFAULT_RANGE * scale, mean + DEFAULT_RANGE * scale
    trees = _trees(final) if getattr(final, "n_features_in_", n_features) == n_features else []
    for feature in range(n_features if trees else 0):
        cuts = np.concatenate([t.threshold[t.feature == feature] for t in trees])
        cuts = cuts[np.isfinite(cuts)]  # a split learnt on NaN alone has an infinite threshold
        if len(cuts):
            margin = max(float(cuts.max() - cuts.min()) / 10, 1e-3)
            low[feature], high[feature] = cuts.min() - margin, cuts.max() + margin
    return low, high


def _trees(estimator: Any) -> list[Any]:
    """The fitted trees (`tree_`) of a tree or a tree ensemble, gradient boosting included."""
    if hasattr(estimator, "tree_"):
        return [estimator.tree_]
    members = np.asarray(getattr(estimator, "estimators_", []), dtype=object).ravel()
    return [member.tree_ for member in members if hasattr(member, "tree_")]
