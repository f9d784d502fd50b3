"""A model version's reference profile: what its training data looked like, for drift.

At publish, `build_profile` bins each feature of a reference file (and the model's scores on
it) at the reference's deciles and stores each bin's share of reference rows. Workers count
live rows per bin with `bin_counts` (one vector per batch, summed in Redis); the monitor turns
the sums into a population stability index per feature and for the score with `psi`.

Bins: k interior edges give k + 1 bins, (-inf, e0), [e0, e1), ..., [e_{k-1}, +inf); a value
equal to an edge goes to the bin above it (np.searchsorted side="right"). A category feature's
bins are its reference's most frequent categories (up to `bins` of them), then "other" (any
other value, one never seen included). A profile of a version that takes missing values (or
of a reference that has them) gives every feature a last bin more, "missing".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np
import orjson

from worker.models.features import MISSING_KEYS, is_missing

DEFAULT_BINS = 10
# Shares below this are raised to it before PSI's log: a bin empty on one side would otherwise
# contribute infinity. 1e-4 caps one such bin's term at about e * ln(e / 1e-4).
PSI_FLOOR = 1e-4
SUM_TOLERANCE = 1e-6  # proportions read back (or hand-edited) must sum to 1 within this
_JSON_KEYS = frozenset(
    {"features", "edges", "proportions", "score_edges", "score_proportions", "rows"}
)
_OPTIONAL_JSON_KEYS = frozenset({"categories", "missing"})  # absent: numbers, no missing bin


# eq=False: the generated __eq__ would compare numpy arrays, whose truth value is ambiguous.
@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    """Per feature (the model's order) and for the score: bin edges and reference shares."""

    features: tuple[str, ...]
    edges: tuple[np.ndarray, ...]
    proportions: tuple[np.ndarray, ...]
    score_edges: np.ndarray
    score_proportions: np.ndarray
    rows: int
    # per feature: its categories (bins in this order, then "other"), None for a number
    categories: tuple[tuple[str, ...] | None, ...] = ()
    missing: bool = False  # a last bin per feature for missing values
    # Derived in __post_init__ for the hot path: every column's bin count, score last, each
    # column's first slot in a bin-count vector (as a column, to offset n bin indices at once),
    # and each category feature's value -> bin lookup.
    _sizes: tuple[int, ...] = field(init=False, repr=False)
    _offsets: np.ndarray = field(init=False, repr=False)
    _lookups: tuple[dict[object, int] | None, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Validate once and freeze the arrays, so a profile from any source is usable as is."""
        features = tuple(self.features)
        _check_features(features)
        if len(self.edges) != len(features) or len(self.proportions) != len(features):
            raise ValueError(
                f"profile has {len(features)} features but {len(self.edges)} edge lists "
                f"and {len(self.proportions)} proportion lists"
            )
        if isinstance(self.rows, bool) or not isinstance(self.rows, int) or self.rows < 1:
            raise ValueError(f"profile rows must be a positive integer, got {self.rows!r}")
        categories = _categories(features, self.categories)
        names = (*features, "score")
        edges = [
            _edges(name, e) for name, e in zip(names, (*self.edges, self.score_edges), strict=True)
        ]
        extra = int(bool(self.missing))
        sizes = [
            (len(e) if c is None else len(c)) + 1 + extra
            for e, c in zip(edges[:-1], categories, strict=True)
        ] + [len(edges[-1]) + 1]
        for name, column_edges, column_categories in zip(
            features, edges[:-1], categories, strict=True
        ):
            if column_categories is not None and len(column_edges):
                raise ValueError(f"{name}: a category feature has no edges")
        shares = (*self.proportions, self.score_proportions)
        proportions = [_proportions(n, p, k) for n, p, k in zip(names, shares, sizes, strict=True)]
        _set = object.__setattr__  # the dataclass is frozen: normalise through the back door
        _set(self, "features", features)
        _set(self, "edges", tuple(edges[:-1]))
        _set(self, "proportions", tuple(proportions[:-1]))
        _set(self, "score_edges", edges[-1])
        _set(self, "score_proportions", proportions[-1])
        _set(self, "categories", categories)
        _set(self, "missing", bool(self.missing))
        _set(self, "_sizes", tuple(sizes))
        _set(self, "_offsets", np.cumsum([0, *sizes[:-1]])[:, None])
        _set(self, "_lookups", tuple(_lookup(c, bool(self.missing)) for c in categories))

    @property
    def sizes(self) -> list[int]:
        """Bins per feature, then the score's."""
        return list(self._sizes)

    @property
    def width(self) -> int:
        """Length of a bin-count vector."""
        return sum(self.sizes)

    def bin_counts(self, matrix: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Live rows (model feature order) and their scores -> int64 counts, layout `sizes`.

        On the hot path once per batch: one searchsorted (a number) or one lookup pass in C (a
        category) per column and one bincount, so the cost grows with columns, not with a
        Python loop over rows. Infinities never reach here (decoding rejects them); a missing
        value (NaN, None) goes to the missing bin, or without one the top bin.
        """
        rows = _check_live(matrix, scores, len(self.features))
        if rows == 0:
            return np.zeros(self.width, dtype=np.int64)
        index = np.empty((len(self._sizes), rows), dtype=np.intp)
        for column, (edges, lookup, size) in enumerate(
            zip(self.edges, self._lookups, self._sizes, strict=False)
        ):
            values = matrix[:, column]
            if lookup is not None:
                other = len(self.categories[column] or ())
                index[column] = np.fromiter(
                    map(lookup.get, values, repeat(other)), dtype=np.intp, count=rows
                )
                continue
            numbers = np.asarray(values, dtype=np.float64)  # None becomes NaN
            index[column] = np.searchsorted(edges, numbers, side="right")
            if self.missing:
                index[column][np.isnan(numbers)] = size - 1
        index[-1] = np.searchsorted(self.score_edges, scores, side="right")
        index += self._offsets
        return np.bincount(index.ravel(), minlength=self.width).astype(np.int64, copy=False)

    def psi(self, counts: np.ndarray) -> tuple[dict[str, float], float | None]:
        """Summed bin counts -> (PSI per feature, PSI of the score).

        PSI = sum over bins of (a - e) * ln(a / e), a the live share, e the reference share,
        both raised to PSI_FLOOR first so a bin empty on either side stays finite. A feature
        (or the score) with no live rows yet is left out (score: None).
        """
        counts = np.asarray(counts, dtype=np.float64)
        if counts.shape != (self.width,) or not (np.isfinite(counts) & (counts >= 0)).all():
            raise ValueError(
                f"bin counts must be {self.width} non-negative numbers, got shape {counts.shape}"
            )
        segments = np.split(counts, self._offsets[1:, 0])
        shares = (*self.proportions, self.score_proportions)
        values = [_psi(live, reference) for live, reference in zip(segments, shares, strict=True)]
        per_feature = {
            name: value
            for name, value in zip(self.features, values[:-1], strict=True)
            if value is not None
        }
        return per_feature, values[-1]

    def to_json(self) -> bytes:
        """Exact: orjson writes each float's shortest round-trip repr. A numbers-only profile
        without missing bins is written as before categories existed."""
        data: dict[str, object] = {
            "features": list(self.features),
            "rows": self.rows,
            "edges": [edges.tolist() for edges in self.edges],
            "proportions": [shares.tolist() for shares in self.proportions],
            "score_edges": self.score_edges.tolist(),
            "score_proportions": self.score_proportions.tolist(),
        }
        if any(c is not None for c in self.categories):
            data["categories"] = [list(c) if c is not None else None for c in self.categories]
        if self.missing:
            data["missing"] = True
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes | str) -> ReferenceProfile:
        """A stored profile, checked; ValueError says what is malformed."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"reference profile is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not _JSON_KEYS <= set(data) <= (
            _JSON_KEYS | _OPTIONAL_JSON_KEYS
        ):
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(
                f"reference profile must be an object with {sorted(_JSON_KEYS)}, got {keys}"
            )
        categories = data.get("categories", [])
        if not isinstance(categories, list) or not all(
            c is None or (isinstance(c, list) and all(isinstance(v, str) for v in c))
            for c in categories
        ):
            raise ValueError(
                f"reference profile categories must be lists of text, got {_shown(categories)}"
            )
        return cls(
            features=tuple(_json_features(data["features"])),
            edges=tuple(_json_numbers(e, "edges") for e in _json_list(data["edges"], "edges")),
            proportions=tuple(
                _json_numbers(p, "proportions")
                for p in _json_list(data["proportions"], "proportions")
            ),
            score_edges=_json_numbers(data["score_edges"], "score_edges"),
            score_proportions=_json_numbers(data["score_proportions"], "score_proportions"),
            rows=data["rows"],
            categories=tuple(tuple(c) if c is not None else None for c in categories),
            missing=data.get("missing") is True,
        )


def build_profile(
    rows: np.ndarray,
    features: Sequence[str],
    scores: np.ndarray,
    bins: int = DEFAULT_BINS,
    *,
    category_features: Sequence[str] = (),
    missing: bool = False,
) -> ReferenceProfile:
    """Bin each reference column (and the scores) at its quantiles; record each bin's share.

    Edges are np.quantile at 1/bins .. (bins-1)/bins with method="higher", so every edge is a
    value the reference holds, then np.unique; edges equal to the column's minimum are dropped
    (nothing in the reference is below them). Each reference bin is therefore non-empty: a 0/1
    flag gets one edge (at 1), a constant column none (one bin). A category feature's bins are
    its `bins` most frequent values (ties by value), then "other". With `missing` (or missing
    values in the rows: None or NaN), every feature gets a last bin for them.
    """
    rows, scores = _check_reference(rows, features, scores, bins)
    absent = missing_values(rows)
    missing = missing or bool(absent.any())
    edges: list[np.ndarray] = []
    shares: list[np.ndarray] = []
    categories: list[tuple[str, ...] | None] = []
    for j, name in enumerate(features):
        present = rows[~absent[:, j], j]
        if name in category_features:
            top = _top_categories(present, bins)
            edges.append(np.empty(0))
            categories.append(top)
            counts = _category_counts(present, top)
        else:
            numbers = present.astype(np.float64)
            edges.append(_quantile_edges(numbers, bins) if len(numbers) else np.empty(0))
            categories.append(None)
            counts = np.bincount(
                np.searchsorted(edges[-1], numbers, side="right"), minlength=len(edges[-1]) + 1
            )
        tail = [int(absent[:, j].sum())] if missing else []
        shares.append(np.array([*counts.tolist(), *tail], dtype=np.float64) / len(rows))
    score_edges = _quantile_edges(scores, bins)
    return ReferenceProfile(
        features=tuple(features),
        edges=tuple(edges),
        proportions=tuple(shares),
        score_edges=score_edges,
        score_proportions=_shares(scores, score_edges),
        rows=len(rows),
        categories=tuple(categories),
        missing=missing,
    )


def missing_values(rows: np.ndarray) -> np.ndarray:
    """Where a reference value is missing: None or NaN."""
    if rows.dtype != object:
        nan: np.ndarray = np.isnan(rows)
        return nan
    absent: np.ndarray = np.vectorize(is_missing, otypes=[bool])(rows)
    return absent


def _top_categories(values: np.ndarray, bins: int) -> tuple[str, ...]:
    counts = Counter(str(v) for v in values)
    return tuple(sorted(counts, key=lambda v: (-counts[v], v))[:bins])


def _category_counts(values: np.ndarray, top: tuple[str, ...]) -> np.ndarray:
    position = {v: i for i, v in enumerate(top)}
    index = [position.get(str(v), len(top)) for v in values]
    return np.bincount(np.array(index, dtype=np.intp), minlength=len(top) + 1)


# --- profile checks ------------------------------------------------------------------------


def _categories(
    features: tuple[str, ...], given: Sequence[Sequence[str] | None]
) -> tuple[tuple[str, ...] | None, ...]:
    """Per feature, its categories or None (a number); none given: numbers only."""
    if not given:
        return (None,) * len(features)
    if len(given) != len(features):
        raise ValueError(f"profile has {len(features)} features but {len(given)} category lists")
    normalised = tuple(tuple(c) if c is not None else None for c in given)
    for name, column in zip(features, normalised, strict=True):
        if column is not None and len(set(column)) != len(column):
            raise ValueError(f"{name}: categories repeat")
    return normalised


def _lookup(categories: tuple[str, ...] | None, missing: bool) -> dict[object, int] | None:
    """A category feature's value -> bin; a missing value to the missing bin (or "other")."""
    if categories is None:
        return None
    lookup: dict[object, int] = {value: i for i, value in enumerate(categories)}
    lookup.update(dict.fromkeys(MISSING_KEYS, len(categories) + 1 if missing else len(categories)))
    return lookup


def _check_features(features: tuple[str, ...]) -> None:
    if not all(isinstance(name, str) and name for name in features):
        raise ValueError(f"profile features must be non-empty names, got {list(features)!r}")
    if len(set(features)) != len(features):
        raise ValueError(f"profile features must be distinct, got {list(features)!r}")


def _edges(name: str, values: Any) -> np.ndarray:
    edges = _frozen_vector(name, "edges", values)
    if not np.isfinite(edges).all() or (np.diff(edges) <= 0).any():
        raise ValueError(f"{name}: edges must be finite and strictly increasing")
    return edges


def _proportions(name: str, values: Any, bins: int) -> np.ndarray:
    shares = _frozen_vector(name, "proportions", values)
    if len(shares) != bins:
        raise ValueError(f"{name}: {bins} bins but {len(shares)} proportions")
    if not (np.isfinite(shares) & (shares >= 0)).all():
        raise ValueError(f"{name}: proportions must be finite and non-negative")
    if abs(float(shares.sum()) - 1.0) > SUM_TOLERANCE:
        raise ValueError(f"{name}: proportions sum to {float(shares.sum())!r}, not 1")
    return shares


def _frozen_vector(name: str, what: str, values: Any) -> np.ndarray:
    vector = np.array(values, dtype=np.float64)
    if vector.ndim != 1:
        raise ValueError(f"{name}: {what} must be one list of numbers")
    vector.setflags(write=False)
    return vector


def _json_list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"reference profile {what} must be a list, got {_shown(value)}")
    return value


def _json_features(value: object) -> list[str]:
    names = _json_list(value, "features")
    if not all(isinstance(name, str) for name in names):
        raise ValueError(f"reference profile features must be names, got {_shown(names)}")
    return names


def _json_numbers(value: object, what: str) -> np.ndarray:
    numbers = _json_list(value, what)
    if not all(type(number) in {int, float} for number in numbers):  # not bool, not null
        raise ValueError(f"reference profile {what} must hold numbers only, got {_shown(numbers)}")
    return np.array(numbers, dtype=np.float64)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_live(matrix: np.ndarray, scores: np.ndarray, features: int) -> int:
    rows = len(matrix)
    if rows and (matrix.ndim != 2 or matrix.shape[1] != features):
        raise ValueError(f"live matrix must be n x {features}, got shape {matrix.shape}")
    if scores.shape != (rows,):
        raise ValueError(f"need one score per live row ({rows}), got shape {scores.shape}")
    return rows


def _psi(counts: np.ndarray, reference: np.ndarray) -> float | None:
    total = counts.sum()
    if total == 0:
        return None
    live = np.maximum(counts / total, PSI_FLOOR)
    expected = np.maximum(reference, PSI_FLOOR)
    return float(np.sum((live - expected) * np.log(live / expected)))


# --- building ------------------------------------------------------------------------------


def _check_reference(
    rows: np.ndarray, features: Sequence[str], scores: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """The rows (float, NaN where missing; or object, with categories and None) and scores."""
    rows = np.asarray(rows)
    if rows.dtype != object:
        rows = rows.astype(np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != len(features):
        raise ValueError(f"reference rows must be n x {len(features)}, got shape {rows.shape}")
    if len(rows) == 0:
        raise ValueError("reference rows are empty")
    if scores.shape != (len(rows),):
        raise ValueError(f"need one score per reference row ({len(rows)}), got {scores.shape}")
    if rows.dtype != object and np.isinf(rows).any():
        raise ValueError("reference rows must be finite or missing")
    if not np.isfinite(scores).all():
        raise ValueError("reference scores must all be finite")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    return rows, scores


def _quantile_edges(column: np.ndarray, bins: int) -> np.ndarray:
    levels = np.arange(1, bins) / bins
    edges = np.unique(np.quantile(column, levels, method="higher"))
    kept: np.ndarray = edges[edges > column.min()]
    return kept


def _shares(column: np.ndarray, edges: np.ndarray) -> np.ndarray:
    index = np.searchsorted(edges, column, side="right")
    return np.bincount(index, minlength=len(edges) + 1) / len(column)
