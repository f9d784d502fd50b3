"""A version's feature contract: each feature's name and kind, whether missing values are
given to the model, and the form the estimator takes its rows in.

Kinds: a `number` is a JSON number (an int or a float, never a boolean); a `category` is a
JSON string. A number or a boolean sent for a category feature is refused, never turned into
its text form: `1` and `"1"` are one category only if the estimator was fitted so, which the
worker cannot know. A category fitted on integer codes (Avazu's `banner_pos`, say) is a
`number` feature whose encoder sees the integers it was fitted on.

A missing feature (`null` or absent) is held as None in a decoded object matrix and given to a
version that accepts missing values as NaN, in number and category columns alike (NaN is what
pandas reads an empty cell as, and what SimpleImputer and HistGradientBoosting take as
missing), or as None to encoders fitted on None; a version that does not accept them has the
event dead-lettered.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from worker.errors import ArtifactRejected

FeatureKind = Literal["number", "category"]
InputForm = Literal["array", "frame"]  # a float or object matrix, or a pandas DataFrame
KINDS: tuple[FeatureKind, ...] = get_args(FeatureKind)
FORMS: tuple[InputForm, ...] = get_args(InputForm)
NUMBER: FeatureKind = "number"
CATEGORY: FeatureKind = "category"


@dataclass(frozen=True)
class FeatureSchema:
    names: tuple[str, ...]
    kinds: tuple[FeatureKind, ...]
    accepts_missing: bool = False
    form: InputForm = "array"
    # a missing category given as None, not NaN: its encoders were fitted on None (an object
    # column built from JSON records); found from the estimator at load, never stored
    none_for_missing: bool = False

    @classmethod
    def numbers(cls, names: Sequence[str]) -> FeatureSchema:
        """Numbers only, nothing missing, a float matrix: every version before kinds."""
        return cls(tuple(names), (NUMBER,) * len(names))

    @property
    def plain(self) -> bool:
        """Numbers only and nothing missing: the batch decodes on the numeric fast path."""
        return not self.accepts_missing and self.all_numbers

    @property
    def all_numbers(self) -> bool:
        return all(kind == "number" for kind in self.kinds)

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(n for n, k in zip(self.names, self.kinds, strict=True) if k == "category")

    def select_kinds(self, names: Sequence[str]) -> set[FeatureKind]:
        kinds = self._kind_of
        return {kinds[name] for name in names}

    def kinds_by_name(self) -> dict[str, FeatureKind]:
        return dict(self._kind_of)

    @functools.cached_property
    def _kind_of(self) -> dict[str, FeatureKind]:
        """Once per schema: the per-batch paths (`frame`, `reads_like`) look kinds up by name."""
        return dict(zip(self.names, self.kinds, strict=True))

    def reads_like(self, other: FeatureSchema) -> bool:
        """Whether `other`'s decoded rows serve this schema as they are (its columns)."""
        theirs = other._kind_of
        return self.accepts_missing == other.accepts_missing and all(
            theirs.get(name) == kind for name, kind in zip(self.names, self.kinds, strict=True)
        )

    def model_input(self, matrix: np.ndarray) -> Any:
        """Decoded rows (a float matrix, or an object one with categories) in the form the
        estimator was fitted on."""
        if self.form == "frame":
            return self.frame(matrix)
        if self.all_numbers:
            return np.asarray(matrix, dtype=np.float64)
        return _nan_for_none(matrix)

    def frame(self, matrix: np.ndarray, names: Sequence[str] | None = None) -> Any:
        """A DataFrame with the estimator's column names (or these of them): float64 numbers,
        object categories."""
        import pandas as pd

        kinds = self._kind_of
        chosen = list(self.names if names is None else names)
        columns = {  # astype: None becomes NaN
            name: self._categories(matrix[:, i])
            if kinds[name] == "category"
            else matrix[:, i].astype(np.float64)
            for name, i in zip(chosen, map(self.names.index, chosen), strict=True)
        }
        return pd.DataFrame(columns, columns=chosen, copy=False)

    def _categories(self, column: np.ndarray) -> Any:
        import pandas as pd

        if self.none_for_missing:  # object dtype, or pandas would read None as NaN
            return pd.Series(column, dtype=object, copy=False)
        return _nan_for_none(column)


def parse_kinds(spec: str) -> dict[str, FeatureKind]:
    """`I1:number,C1:category` into {name: kind}; ValueError naming the fault."""
    kinds: dict[str, FeatureKind] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, kind = (piece.strip() for piece in item.partition(":"))
        if not sep or not name:
            raise ValueError(f"{item!r} is not NAME:KIND")
        kinds[name] = check_kind(name, kind)
    return kinds


def check_kind(name: str, kind: object) -> FeatureKind:
    if kind not in KINDS:
        raise ValueError(f"feature {name!r}: unknown kind {kind!r} (kinds: {', '.join(KINDS)})")
    return kind


def resolve_kinds(
    names: Sequence[str], *sources: Mapping[str, FeatureKind] | None
) -> tuple[FeatureKind, ...]:
    """Each feature's kind from the first source that names it, else `number`. The first
    source (the operator's) may not name a feature the version does not have."""
    first = sources[0] if sources else None
    unknown = sorted(set(first or ()) - set(names))
    if unknown:
        raise ArtifactRejected(
            f"--feature-types names {', '.join(map(repr, unknown))}, not features of this "
            f"version ({', '.join(names)})"
        )
    return tuple(
        next((source[name] for source in sources if source and name in source), "number")
        for name in names
    )


def estimator_kinds(estimator: Any) -> dict[str, FeatureKind]:
    """What a Pipeline fitted on a DataFrame reveals: each column its ColumnTransformers give
    to an encoder fitted on text (`categories_` of strings) or to a FeatureHasher is a
    category; the columns they give to anything else are numbers. Columns no step names are
    left out (the next source, or `number`, decides)."""
    kinds: dict[str, FeatureKind] = {}
    for transformer in _parts(estimator):
        for _, part, columns in getattr(transformer, "transformers_", ()):
            if isinstance(part, str) or not _names(columns):
                continue  # "drop" and "passthrough" say nothing of the kind
            kind: FeatureKind = "category" if _takes_text(part) else "number"
            kinds.update(dict.fromkeys(_names(columns), kind))
    return kinds


def _parts(estimator: Any) -> list[Any]:
    """The estimator and every step nested in it (Pipeline steps, ColumnTransformer parts)."""
    found = [estimator]
    for step in getattr(estimator, "steps", ()):
        found += _parts(step[1])
    for _, part, _ in getattr(estimator, "transformers_", ()):
        if not isinstance(part, str):
            found += _parts(part)
    return found


def _names(columns: object) -> list[str]:
    """Column names a ColumnTransformer part takes (positions and masks say no name)."""
    if isinstance(columns, str):
        return [columns]
    if isinstance(columns, list | tuple | np.ndarray):
        return [c for c in columns if isinstance(c, str)]
    return []


def _takes_text(part: Any) -> bool:
    from sklearn.feature_extraction import FeatureHasher

    for step in _parts(part):
        if isinstance(step, FeatureHasher):
            return True
        categories = getattr(step, "categories_", None)
        if categories is not None and any(
            isinstance(v, str) for c in categories for v in np.asarray(c).tolist()
        ):
            return True  # text categories: integer codes in an object column are numbers
    return False


def known_categories(estimator: Any) -> dict[str, list[str]]:
    """The text categories each encoder was fitted on, by column name where a ColumnTransformer
    says which: probe rows use them, so an encoder that refuses unknown values still scores."""
    known: dict[str, list[str]] = {}
    for transformer in _parts(estimator):
        for _, part, columns in getattr(transformer, "transformers_", ()):
            if isinstance(part, str):
                continue
            for step in _parts(part):
                for name, values in zip(
                    _names(columns), getattr(step, "categories_", ()), strict=False
                ):
                    present = [v for v in np.asarray(values).tolist() if isinstance(v, str)]
                    if present:
                        known.setdefault(name, present)
    return known


def columns_refusing_unknown(estimator: Any) -> set[str]:
    """The columns a ColumnTransformer gives to an encoder that raises on a category it was
    not fitted on (`handle_unknown="error"`, scikit-learn's default)."""
    refusing: set[str] = set()
    for transformer in _parts(estimator):
        for _, part, columns in getattr(transformer, "transformers_", ()):
            if not isinstance(part, str) and any(
                getattr(step, "handle_unknown", None) == "error" for step in _parts(part)
            ):
                refusing.update(_names(columns))
    return refusing


# a missing value as the decoded matrix holds it (None) and as pandas does (the np.nan object):
# keys of a lookup that must find a missing value, by identity, in one dict access
MISSING_KEYS: tuple[object, ...] = (None, np.nan)


def is_missing(value: object) -> bool:
    """None or a NaN float: a missing value in every form the rows take."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def fitted_with_none(estimator: Any) -> bool:
    """Whether an encoder's categories hold None (and no NaN) for a missing value."""
    found = [
        np.asarray(categories).tolist()
        for step in _parts(estimator)
        for categories in getattr(step, "categories_", ())
    ]
    missing = [v for values in found for v in values if is_missing(v)]
    return bool(missing) and all(v is None for v in missing)


def form_of(estimator: Any) -> InputForm:
    """A DataFrame for an estimator fitted on one (it knows its column names), else an array."""
    return "frame" if getattr(estimator, "feature_names_in_", None) is not None else "array"


def parse_form(form: str) -> InputForm:
    if form not in FORMS:
        raise ValueError(f"unknown input form {form!r}")
    return form


def rows_matrix(schema: FeatureSchema, rows: Sequence[Sequence[object]]) -> np.ndarray:
    """Checked feature rows (None where missing) as the matrix every version's scoring takes:
    float64 with NaN for numbers only, else an object matrix holding None where missing (each
    form the estimator takes gives it NaN: `model_input`, `frame`, the column plan)."""
    shape = (len(rows), len(schema.names))
    if schema.all_numbers:
        return np.array(rows, dtype=np.float64).reshape(shape)  # None becomes NaN
    matrix = np.empty(shape, dtype=object)
    if rows:
        matrix[:] = rows
    return matrix


def _nan_for_none(values: np.ndarray) -> np.ndarray:
    """The values with NaN where None (a copy only where there is one)."""
    missing = np.equal(values, None)  # type: ignore[call-overload]
    if not missing.any():
        return values
    values = values.copy()
    values[missing] = np.nan
    return values
