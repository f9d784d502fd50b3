"""What publish proves before it stores a version: probe rows scored through the very path a
worker takes (its decoded matrix, its schema's form, its score function), so a version that no
worker could warm up is refused at `scorer model publish`, not found by the fleet.

    warm-up row (numbers 0, each category one its encoder knows) → one finite score, or refuse
    form: a DataFrame for an estimator fitted on one, unless it is numbers only and an array
          gives the same scores (faster)
    missing values: the warm-up row with each feature missing in turn, and all missing;
          accepted when every score is finite (or as `--missing` says, refused if it cannot)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from worker.errors import ArtifactRejected
from worker.models.entry import RegistryEntry
from worker.models.features import (
    FeatureKind,
    FeatureSchema,
    form_of,
    known_categories,
    rows_matrix,
)
from worker.models.scoring import ModelKind, score_function

MissingPolicy = Literal["accept", "reject"]


@dataclass(frozen=True)
class Probed:
    """A version's schema as publish proved it, and the row its workers warm up with."""

    schema: FeatureSchema
    warm_up_row: tuple[object, ...]

    def stamp(self, entry: RegistryEntry) -> RegistryEntry:
        """The entry with what publish proved."""
        return replace(
            entry,
            feature_kinds=self.schema.kinds,
            accepts_missing=self.schema.accepts_missing,
            input_form=self.schema.form,
            warm_up_row=self.warm_up_row,
        )

    def refusing_missing(self) -> Probed:
        return replace(self, schema=replace(self.schema, accepts_missing=False))


def probe_version(
    estimator: Any,
    kind: ModelKind,
    names: Sequence[str],
    kinds: Sequence[FeatureKind],
    missing: MissingPolicy | None = None,
) -> Probed:
    """The schema this estimator is served with; ArtifactRejected naming why a worker could
    not score it."""
    schema = FeatureSchema(tuple(names), tuple(kinds), False, form_of(estimator))
    known = known_categories(estimator)
    row = tuple(
        (known.get(name) or [""])[0] if k == "category" else 0.0
        for name, k in zip(schema.names, schema.kinds, strict=True)
    )
    scores = _scores(estimator, kind, schema, [row])
    if scores is None or isinstance(scores, str):
        why = scores or "not one finite score"
        raise ArtifactRejected(
            f"a worker could not warm this version up: scoring {_shown(schema, row)} as "
            f"{schema.form} failed: {why}"
        )
    if schema.form == "frame" and schema.all_numbers:
        rows: list[tuple[object, ...]] = [row, (1.0,) * len(row), (-1.0,) * len(row)]
        as_frame = _scores(estimator, kind, schema, rows)
        as_array = _scores(estimator, kind, replace(schema, form="array"), rows)
        if (
            isinstance(as_array, np.ndarray)
            and isinstance(as_frame, np.ndarray)
            and np.array_equal(as_array, as_frame)
        ):
            schema = replace(schema, form="array")
    accepts = _accepts_missing(estimator, kind, schema, row)
    if missing == "accept" and accepts is not True:
        raise ArtifactRejected(f"--missing accept, but this version cannot score them: {accepts}")
    return Probed(replace(schema, accepts_missing=missing != "reject" and accepts is True), row)


def _accepts_missing(
    estimator: Any, kind: ModelKind, schema: FeatureSchema, row: tuple[object, ...]
) -> bool | str:
    """True, or why not: each feature missing in turn, then all of them at once."""
    rows = [(*row[:j], None, *row[j + 1 :]) for j in range(len(row))] + [(None,) * len(row)]
    scores = _scores(estimator, kind, replace(schema, accepts_missing=True), rows)
    if isinstance(scores, np.ndarray):
        return True
    return scores or "a missing value gives a score that is not a finite number"


def _scores(
    estimator: Any, kind: ModelKind, schema: FeatureSchema, rows: list[tuple[object, ...]]
) -> np.ndarray | str | None:
    """The scores of `rows` as a worker computes them, but with scikit-learn's own checks of
    the input on (so NaN is refused by an estimator that cannot take it, where a worker's
    unchecked call could give a meaningless score); the error's text if scoring raises, None
    if a score is missing or not finite."""
    try:
        scored = score_function(estimator, kind, schema, checked=True)
        scores = scored(rows_matrix(schema, rows))
    except Exception as exc:  # one line: scikit-learn's messages run to paragraphs
        first = (str(exc).splitlines() or [""])[0]
        return f"{type(exc).__name__}: {first if len(first) <= 200 else first[:197] + '...'}"
    if scores.shape != (len(rows),) or not np.isfinite(scores).all():
        return None
    return scores


def _shown(schema: FeatureSchema, row: tuple[object, ...]) -> str:
    pairs = ", ".join(f"{n}={v!r}" for n, v in zip(schema.names, row, strict=True))
    return "{" + (pairs if len(pairs) <= 120 else pairs[:117] + "...") + "}"
