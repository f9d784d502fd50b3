"""Compiled models: a fitted estimator as ONNX, checked against scikit-learn before it is
stored, and scored with onnxruntime.

Why: loading a joblib artifact runs code (its digest and signature say who published it, not
that it is harmless), while an ONNX graph is data; and onnxruntime scores tree ensembles about
twice as fast as scikit-learn. Not every model: a gradient boosting was measured slower, so
`--format both` times both runtimes on the probe rows and records the faster.

A Pipeline fitted on a DataFrame becomes a graph of one input per column (onnx_inputs.py):
number columns with their NaN, category columns as strings. The probe rows then include rows
with missing values (where the version takes them) and categories no encoder has seen.

ONNX computes in float32, so scores may differ from scikit-learn's in the sixth decimal; the
largest difference on the probe rows is measured, refused above the tolerance, and stored with
the version.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from typing import Any, Literal

import numpy as np

from worker.errors import ArtifactRejected
from worker.models.artifacts import EstimatorInfo
from worker.models.features import (
    FeatureSchema,
    fitted_with_none,
    form_of,
    is_missing,
    known_categories,
)
from worker.models.onnx_inputs import feeds_for, input_types, missing_text
from worker.models.scoring import ModelKind, ScoreFn, score_function

Runtime = Literal["joblib", "onnx"]
PROBE_ROWS = 2000  # rows the fidelity check and the timings score
VARIANT_ROWS = 500  # of them, copied with unseen categories, and with missing values
DEFAULT_RANGE = 3.0  # without ranges from the model: features are taken as standard-scaled
_TIMING_BATCH, _TIMING_REPEATS = 1000, 7
_INSTALL_HINT = "install the onnx extra: pip install 'scorer-worker[onnx]'"


@dataclass(frozen=True)
class Compiled:
    """An estimator converted to ONNX, with what its check measured."""

    data: bytes
    opset: int
    max_difference: float  # largest |ONNX score - scikit-learn score| on the probe rows
    probe_rows: int
    joblib_us: float  # scoring cost per event, batches of 1,000 rows, one thread
    onnx_us: float
    missing_text: str  # what a string input is given for a missing category

    @property
    def faster(self) -> Runtime:
        return "onnx" if self.onnx_us < self.joblib_us else "joblib"


def compile_estimator(
    estimator: Any,
    info: EstimatorInfo,
    probe: np.ndarray,
    tolerance: float,
    schema: FeatureSchema | None = None,
) -> Compiled:
    """Convert, then score the probe rows (decoded rows of `schema`, numbers only without
    one) with both runtimes and refuse a difference above `tolerance`; raises
    ArtifactRejected naming what failed."""
    try:
        from skl2onnx import convert_sklearn

        from worker.models.onnx_mends import custom_converters
    except ImportError:
        raise ArtifactRejected(f"--format onnx needs skl2onnx: {_INSTALL_HINT}") from None
    schema = schema or FeatureSchema.numbers(info.features)
    missing = missing_text(bool(schema.categories) and fitted_with_none(estimator))
    try:
        graph = convert_sklearn(
            estimator,
            initial_types=input_types(schema, per_column=form_of(estimator) == "frame"),
            # the probabilities as a plain tensor, not ZipMap's list of dicts
            options={"zipmap": False} if info.kind == "classifier" else None,
            **custom_converters(),
        )
    except Exception as exc:
        raise ArtifactRejected(
            f"{_failed_step(estimator, exc)} cannot be converted to ONNX: "
            f"{type(exc).__name__}: {_first_line(exc)}"
        ) from None
    data = graph.SerializeToString()
    onnx_score = onnx_score_function(data, info.kind, 1, schema, missing)
    joblib_score = score_function(estimator, info.kind, schema)
    differences = np.abs(onnx_score(probe) - joblib_score(probe))
    difference = float(np.max(differences))
    if not difference <= tolerance:
        worst = probe[int(np.nanargmax(differences)) if np.isfinite(difference) else 0]
        raise ArtifactRejected(
            f"ONNX scores differ from scikit-learn's by up to {difference:.3g} on "
            f"{len(probe)} probe rows, above the tolerance {tolerance:g}"
            + (" (the largest on a row with a missing value)" if _has_missing(worst) else "")
        )
    opset = max(op.version for op in graph.opset_import if op.domain in ("", "ai.onnx"))
    return Compiled(
        data,
        opset,
        difference,
        len(probe),
        _us_per_event(joblib_score, probe),
        _us_per_event(onnx_score, probe),
        missing,
    )


def onnx_score_function(
    data: bytes,
    kind: ModelKind,
    threads: int,
    schema: FeatureSchema | None = None,
    missing: str = missing_text(False),
) -> ScoreFn:
    """A session over the ONNX bytes, with `threads` threads for one call (the worker's
    processes are the parallelism, so one by default); one score per row, as float64.
    `schema` names a graph's per-column inputs (numbers only, one matrix, without it)."""
    try:
        import onnxruntime
    except ImportError:
        raise ArtifactRejected(f"an ONNX version needs onnxruntime: {_INSTALL_HINT}") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ArtifactRejected(f"ONNX model does not load: {type(exc).__name__}: {exc}") from None
    inputs = [node.name for node in session.get_inputs()]
    if len(inputs) != 1 and (schema is None or inputs != list(schema.names)):
        raise ArtifactRejected(
            f"the ONNX graph's inputs ({', '.join(inputs)}) are neither one matrix nor the "
            "version's features"
        )
    feeds = feeds_for(inputs, schema, missing)
    output = "probabilities" if kind == "classifier" else session.get_outputs()[0].name

    def score(matrix: np.ndarray) -> np.ndarray:
        (result,) = session.run([output], feeds(matrix))
        values = np.asarray(result, dtype=np.float64)
        return values[:, 1] if kind == "classifier" else values.reshape(len(matrix))

    return score


def probe_rows(estimator: Any, schema: FeatureSchema, reference: np.ndarray | None) -> np.ndarray:
    """The rows the fidelity check scores, decoded as a worker decodes them: the reference
    rows when given (the first PROBE_ROWS), else rows drawn within each number's range as the
    model shows it (a tree's split thresholds, widened by a tenth; a leading StandardScaler's
    mean ± 3 standard deviations; else ±DEFAULT_RANGE) and among each category's known
    values. For versions with categories or missing values, VARIANT_ROWS of them follow
    again with some categories unseen, and again with some values missing where the version
    takes them."""
    rng = np.random.default_rng(0)
    if reference is not None and len(reference):
        rows = reference[:PROBE_ROWS]
    else:
        rows = _drawn_rows(estimator, schema, rng)
    if schema.plain:
        return np.asarray(rows, dtype=np.float64)
    variants = [rows]
    if schema.categories:
        variants.append(_with_unseen(rows[:VARIANT_ROWS], schema, rng))
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


def _with_unseen(rows: np.ndarray, schema: FeatureSchema, rng: np.random.Generator) -> np.ndarray:
    unseen = rows.copy()
    for j, name in _category_columns(schema):
        chosen = rng.random(len(unseen)) < 0.3
        unseen[chosen, j] = [f"unseen-{name}-{i}" for i in np.flatnonzero(chosen)]
    return unseen


def _with_missing(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    missing = rows.copy()
    missing[rng.random(missing.shape) < 0.3] = np.nan if rows.dtype != object else None
    return missing


def _has_missing(row: np.ndarray) -> bool:
    return any(map(is_missing, row.tolist()))


def _category_columns(schema: FeatureSchema) -> Iterator[tuple[int, str]]:
    return ((schema.names.index(name), name) for name in schema.categories)


def _failed_step(estimator: Any, exc: Exception) -> str:
    """The step a conversion failed at: the first whose class the error names, as
    `step/substep (Class)`, else the estimator's class."""
    text = str(exc)
    for path, step in _named_steps(estimator, ()):
        if type(step).__name__ in text and path:
            return f"step {'/'.join(path)} ({type(step).__name__})"
    return type(estimator).__name__


def _named_steps(estimator: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every step inside the estimator, depth first, with its names from the top."""
    yield path, estimator
    for name, step in getattr(estimator, "steps", ()):
        yield from _named_steps(step, (*path, name))
    for name, part, _ in getattr(estimator, "transformers_", ()):
        if not isinstance(part, str):
            yield from _named_steps(part, (*path, name))


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def feature_ranges(estimator: Any, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    low = np.full(n_features, -DEFAULT_RANGE)
    high = np.full(n_features, DEFAULT_RANGE)
    steps = [step for _, step in getattr(estimator, "steps", [])] or [estimator]
    scaler, final = steps[0], steps[-1]
    if hasattr(scaler, "mean_") and hasattr(scaler, "scale_"):
        mean = np.asarray(scaler.mean_, dtype=np.float64)
        scale = np.asarray(scaler.scale_, dtype=np.float64)
        return mean - DEFAULT_RANGE * scale, mean + DEFAULT_RANGE * scale
    trees = _trees(final)
    if trees:
        for feature in range(n_features):
            cuts = np.concatenate(
                [t.threshold[t.feature == feature] for t in trees] or [np.empty(0)]
            )
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


def _us_per_event(score: ScoreFn, probe: np.ndarray) -> float:
    """The fastest of several runs over batches of 1,000 rows, per row (noise only slows)."""
    batch = np.resize(probe, (_TIMING_BATCH, probe.shape[1]))
    score(batch)
    best = float("inf")
    for _ in range(_TIMING_REPEATS):
        started = time.perf_counter()
        score(batch)
        best = min(best, time.perf_counter() - started)
    return best / _TIMING_BATCH * 1e6


def runtime_versions() -> dict[str, str]:
    """What compiled a version, for the record."""
    return {name: installed_version(name) for name in ("skl2onnx", "onnxruntime", "onnx")}
