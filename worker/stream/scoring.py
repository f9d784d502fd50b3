"""One batch scored by what serves now: the primary and the canary on their arms, the shadows on
every event.

    decode with the primary's features → split rows by arm (arms.py) → one predict call per arm
    → predictions in input order; then one call per shadow version, to the shadow topic only

An event the primary's features cannot be read from is dead-lettered whatever its arm. A
version whose features are among the primary's reads its columns from the same matrix; one
that needs others decodes its rows again with its own. A canary scores its arm as the primary
scores its own: an event it cannot read or score is dead-lettered, naming the canary. A shadow
version that cannot read or score an event only counts it: shadows never change what the
output or the dead-letter topic receives.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import structlog

from worker.models.features import FeatureSchema
from worker.models.holder import LoadedModel, Serving
from worker.models.usage import Usage
from worker.stream.arms import arm_buckets
from worker.stream.events import (
    JSON_EVENTS,
    DecodedBatch,
    EventReader,
    Limits,
    Reason,
    Reject,
    decode_batch,
    encode_predictions,
)

log = structlog.get_logger(__name__)


@dataclass
class ScoredBatch:
    """Predictions in input order (`accepted`: each one's record index), the dead letters
    (each naming the version that refused it), and the shadow predictions."""

    accepted: list[int] = field(default_factory=list)
    predictions: list[bytes] = field(default_factory=list)
    event_ts: list[float | None] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (version, arm)
    shadow_accepted: list[int] = field(default_factory=list)
    shadow_predictions: list[bytes] = field(default_factory=list)
    shadow_failures: Counter[str] = field(default_factory=Counter)
    timings: list[tuple[str, str, float]] = field(default_factory=list)  # version, arm, s
    usage: dict[str, Usage] = field(default_factory=dict)  # per version: rows, failed, bins

    def note_usage(
        self, model: LoadedModel, given: int, failed: int = 0, bins: np.ndarray | None = None
    ) -> None:
        """What `model` met in this batch: rows given, rows it failed on, and the bins of
        its reference profile those rows and their scores fell in."""
        self.usage.setdefault(model.version, Usage()).add(Usage(given, failed, bins))

    @property
    def versions(self) -> set[str]:
        return {version for version, _ in self.counts}


def score_batch(
    values: Sequence[bytes | None],
    keys: Sequence[bytes | None],
    serving: Serving,
    limits: Limits,
    *,
    with_shadows: bool = True,
    reader: EventReader = JSON_EVENTS,
) -> ScoredBatch:
    primary = serving.primary
    decoded = decode_batch(values, primary.schema, limits, reader)
    reading = _Reading(values, primary.schema, limits, reader)
    out = ScoredBatch(rejects=[_naming(r, primary.version) for r in decoded.rejects])
    refused = _version_failures(decoded.rejects)
    if refused:  # events it would score but for a missing value count in its error rate
        out.note_usage(primary, refused, refused)
    scored_at = time.time()
    parts: list[tuple[str, LoadedModel, DecodedBatch]] = [("primary", primary, decoded)]
    if serving.canary is not None and decoded.accepted:
        on_canary = _canary_rows(decoded, keys, serving)
        if _score_arms_together(out, decoded, on_canary, (primary, serving.canary), scored_at):
            parts = []
        else:
            parts = [
                ("primary", primary, decoded.subset(np.flatnonzero(~on_canary).tolist())),
                ("canary", serving.canary, decoded.subset(np.flatnonzero(on_canary).tolist())),
            ]
    for arm, model, rows in parts:
        part = reading.rows_for(model, rows)
        started = time.perf_counter()
        scores = score_isolating_failures(model, part)
        out.timings.append((model.version, arm, time.perf_counter() - started))
        _note_usage(out, model, part, scores)
        out.rejects += [_naming(r, model.version) for r in part.rejects]
        out.accepted += part.accepted
        out.event_ts += part.event_ts
        out.predictions += encode_predictions(part, scores, scored_at, [(model.version, arm)])
        out.counts[(model.version, arm)] += len(part.accepted)
    if len(parts) > 1:
        _restore_input_order(out)
    if with_shadows:
        for shadow in serving.shadows:
            _score_shadow(out, shadow, reading, decoded, scored_at)
    out.rejects.sort(key=lambda reject: reject.index)
    return out


def _score_arms_together(
    out: ScoredBatch,
    decoded: DecodedBatch,
    on_canary: np.ndarray,
    models: tuple[LoadedModel, LoadedModel],
    scored_at: float,
) -> bool:
    """The common case in one pass: the canary reads the primary's features and neither
    version raises, so both predict into one array and the predictions are encoded in input
    order, with no split and no reordering. False: nothing was recorded; take the general
    path (which also isolates the rows a version cannot score)."""
    primary, canary = models
    if canary.schema != primary.schema:
        return False
    scores = np.empty(len(decoded.accepted))
    timings = []
    try:
        for model, arm, rows in ((primary, "primary", ~on_canary), (canary, "canary", on_canary)):
            started = time.perf_counter()
            scores[rows] = model.score(decoded.matrix[rows]) if rows.any() else []
            timings.append((model.version, arm, time.perf_counter() - started))
    except Exception:
        return False
    if not np.isfinite(scores).all():
        return False
    labels = [(primary.version, "primary"), (canary.version, "canary")]
    out.predictions = encode_predictions(
        decoded, scores, scored_at, labels, on_canary.astype(np.int8).tolist()
    )
    out.accepted, out.event_ts = decoded.accepted, decoded.event_ts
    on = int(on_canary.sum())
    out.counts[labels[0]] += len(decoded.accepted) - on
    out.counts[labels[1]] += on
    out.timings += timings
    for model, rows, label in ((primary, ~on_canary, labels[0]), (canary, on_canary, labels[1])):
        out.note_usage(
            model, out.counts[label], bins=_reference_bins(model, decoded.matrix, scores, rows)
        )
    return True


def _canary_rows(
    decoded: DecodedBatch, keys: Sequence[bytes | None], serving: Serving
) -> np.ndarray:
    """True for each accepted row whose key's bucket is below the canary's share."""
    row_keys = [keys[index] for index in decoded.accepted]
    return arm_buckets(row_keys, decoded.event_ids) < serving.canary_buckets


@dataclass(frozen=True)
class _Reading:
    """The batch's raw values and how the primary read them."""

    values: Sequence[bytes | None]
    schema: FeatureSchema
    limits: Limits
    reader: EventReader

    def rows_for(self, model: LoadedModel, rows: DecodedBatch) -> DecodedBatch:
        """The rows as `model` reads them, with no rejects yet: the primary's matrix when the
        features agree, its columns when the model reads fewer the same way, else decoded
        again."""
        if model.schema.reads_like(self.schema):
            if model.features == self.schema.names:
                return dataclasses.replace(rows, rejects=[])
            columns = [self.schema.names.index(name) for name in model.features]
            return dataclasses.replace(rows, matrix=rows.matrix[:, columns], rejects=[])
        values = [self.values[i] for i in rows.accepted]
        again = decode_batch(values, model.schema, self.limits, self.reader)
        again.accepted = [rows.accepted[i] for i in again.accepted]
        again.rejects = [
            dataclasses.replace(r, index=rows.accepted[r.index]) for r in again.rejects
        ]
        return again


def _restore_input_order(out: ScoredBatch) -> None:
    order = np.argsort(np.array(out.accepted), kind="stable").tolist()
    out.accepted = [out.accepted[i] for i in order]
    out.predictions = [out.predictions[i] for i in order]
    out.event_ts = [out.event_ts[i] for i in order]


def _score_shadow(
    out: ScoredBatch,
    shadow: LoadedModel,
    reading: _Reading,
    decoded: DecodedBatch,
    scored_at: float,
) -> None:
    """Every event the primary could read, scored by `shadow`; what it cannot score is counted,
    never dead-lettered. Its whole cost (reading its rows, predict, encode) is timed."""
    started = time.perf_counter()
    part = reading.rows_for(shadow, decoded)
    scores = score_isolating_failures(shadow, part)
    _note_usage(out, shadow, part, scores)
    out.shadow_accepted += part.accepted
    out.shadow_predictions += encode_predictions(
        part, scores, scored_at, [(shadow.version, "shadow")]
    )
    out.counts[(shadow.version, "shadow")] += len(part.accepted)
    out.shadow_failures[shadow.version] += len(part.rejects)
    out.timings.append((shadow.version, "shadow", time.perf_counter() - started))


def _version_failures(rejects: list[Reject]) -> int:
    """Rows a version failed: it raised or gave no finite score, or it refuses the missing
    value an event has (the error rate's numerator)."""
    return sum(1 for r in rejects if r.reason in _VERSION_FAILURES)


_VERSION_FAILURES = frozenset((Reason.SCORING_FAILED, Reason.MISSING_FEATURE))


def _note_usage(
    out: ScoredBatch, model: LoadedModel, part: DecodedBatch, scores: np.ndarray
) -> None:
    failed = _version_failures(part.rejects)
    bins = _reference_bins(model, part.matrix, scores)
    out.note_usage(model, len(part.accepted) + failed, failed, bins)


def _reference_bins(
    model: LoadedModel, matrix: np.ndarray, scores: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray | None:
    """Bin counts against the version's reference profile; None without one (and then no
    copy of the rows is made)."""
    if model.profile is None:
        return None
    if rows is not None:
        matrix, scores = matrix[rows], scores[rows]
    return model.profile.bin_counts(matrix, scores)


def _naming(reject: Reject, version: str) -> Reject:
    return dataclasses.replace(reject, model_version=version)


def score_isolating_failures(model: LoadedModel, batch: DecodedBatch) -> np.ndarray:
    """Score the batch in one call; if that raises, score row by row and reject the rows the
    model cannot score, so one poisonous row cannot stop the partition."""
    if not batch.accepted:
        return np.empty(0)
    try:
        whole = model.score(batch.matrix)
    except Exception as exc:
        log.warning(
            "batch.scoring_failed",
            error=f"{type(exc).__name__}: {exc}",
            model_version=model.version,
            n=len(batch.accepted),
        )
    else:
        return _finite_only(model, batch, whole)
    scores: list[float] = []
    keep: list[int] = []
    for row in range(len(batch.accepted)):
        try:
            scores.append(float(model.score(batch.matrix[row : row + 1])[0]))
            keep.append(row)
        except Exception as exc:
            batch.rejects.append(
                Reject(
                    batch.accepted[row],
                    Reason.SCORING_FAILED,
                    f"model {model.version} failed: {type(exc).__name__}: {exc}",
                )
            )
    batch.keep_rows(keep)
    return _finite_only(model, batch, np.array(scores, dtype=np.float64))


def _finite_only(model: LoadedModel, batch: DecodedBatch, scores: np.ndarray) -> np.ndarray:
    """The scores that are finite numbers; a row the model scored NaN or infinite (a step of
    a Pipeline can make them from finite input) is rejected as scoring_failed, so no null
    score reaches the output topic and the version's error rate counts it."""
    finite = np.isfinite(scores)
    if finite.all():
        return scores
    for row in np.flatnonzero(~finite).tolist():
        batch.rejects.append(
            Reject(
                batch.accepted[row],
                Reason.SCORING_FAILED,
                f"model {model.version} gave a score that is not a finite number: "
                f"{float(scores[row])!r}",
            )
        )
    batch.keep_rows(np.flatnonzero(finite).tolist())
    return np.asarray(scores[finite])
