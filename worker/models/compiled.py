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
    columns_refusing_unknown,
    fitted_with_none,
    form_of,
    is_missing,
    known_categories,
)
from worker.models.onnx_inputs import feeds_for, input_types, missing_text
from worker.models.scoring import ModelKind, ScoreFn, score_function

Runtime = Literal["joblib", "onnx"]
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
    refuses_missing: bool = False  # the graph scores missing values unlike scikit-learn

    @property
    def faster(self) -> Runtime:
        return "onnx" if self.onnx_us < self.joblib_us else "joblib"


def compile_estimator(
    estimator: Any,
    info: EstimatorInfo,
    probe: np.ndarray,
    tolerance: float,
    schema: FeatureSchema | None = None,
    *,
    may_refuse_missing: bool = False,
) -> Compiled:
    """Convert, then score the probe rows (decoded rows of `schema`, numbers only without
    one; fidelity_rows.py) with both runtimes and refuse a difference above `tolerance`;
    raises ArtifactRejected naming what failed. `may_refuse_missing`: where only rows with
    missing values differ, the version is compiled refusing them (`refuses_missing`)."""
    try:
        from skl2onnx import convert_sklearn

        from worker.models.onnx_mends import custom_converters
    except ImportError:
        raise ArtifactRejected(f"--format onnx needs skl2onnx: {_INSTALL_HINT}") from None
    schema = schema or FeatureSchema.numbers(info.features)
    missing = missing_text(bool(schema.categories) and fitted_with_none(estimator))
    _refuse_categories_read_as_missing(estimator, missing)
    try:
        graph = convert_sklearn(
            estimator,
            initial_types=input_types(schema, per_column=_takes_columns(estimator, schema)),
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
    _refuse_unseen_scored(onnx_score, estimator, schema, probe)
    differences = _differences(onnx_score, joblib_score, probe)
    served, refuses_missing = probe, False
    if not differences.max() <= tolerance:
        served = _complete_agreeing(differences, probe, tolerance, may_refuse_missing)
        differences, refuses_missing = differences[~_missing_rows(probe)], True
    opset = max(op.version for op in graph.opset_import if op.domain in ("", "ai.onnx"))
    return Compiled(
        data,
        opset,
        float(differences.max()),
        len(served),
        _us_per_event(joblib_score, served),
        _us_per_event(onnx_score, served),
        missing,
        refuses_missing,
    )


def _takes_columns(estimator: Any, schema: FeatureSchema) -> bool:
    """One input per column: for an estimator fitted on a DataFrame that takes categories or
    selects its columns by name (a ColumnTransformer); one matrix for every other."""
    from sklearn.compose import ColumnTransformer

    return form_of(estimator) == "frame" and (
        bool(schema.categories)
        or any(isinstance(step, ColumnTransformer) for _, step in _named_steps(estimator, ()))
    )


def _refuse_categories_read_as_missing(estimator: Any, missing: str) -> None:
    """A category fitted as the very text an ONNX graph keys the missing category by could
    not be told from a missing value."""
    for name, values in known_categories(estimator).items():
        if missing in values:
            raise ArtifactRejected(
                f"feature {name!r} has the category {missing!r}, the text an ONNX graph reads "
                "as a missing value: publish this version with --format joblib"
            )


def _refuse_unseen_scored(
    onnx_score: ScoreFn, estimator: Any, schema: FeatureSchema, probe: np.ndarray
) -> None:
    """Where an encoder refuses unseen categories (handle_unknown="error"), a worker
    dead-letters such an event: the graph must refuse it too, not score it."""
    for name in sorted(columns_refusing_unknown(estimator) & set(schema.categories)):
        row = probe[:1].astype(object)
        row[0, schema.names.index(name)] = f"unseen-{name}"
        try:
            onnx_score(row)
        except Exception:
            continue  # refused alike
        raise ArtifactRejected(
            f"feature {name!r}'s encoder refuses unseen categories (handle_unknown='error') "
            "but its ONNX graph scores them: publish with --format joblib, or fit the encoder "
            "to ignore them"
        )


def _differences(onnx_score: ScoreFn, joblib_score: ScoreFn, probe: np.ndarray) -> np.ndarray:
    """|ONNX - scikit-learn| per probe row, inf where either is not finite; a runtime that
    raises on the probe rows is a one-line refusal."""
    scored = []
    for runtime, score in (("ONNX", onnx_score), ("scikit-learn", joblib_score)):
        try:
            scored.append(score(probe))
        except Exception as exc:
            raise ArtifactRejected(
                f"{runtime} could not score the probe rows: {type(exc).__name__}: "
                f"{_first_line(exc)[:200]}"
            ) from None
    differences: np.ndarray = np.nan_to_num(np.abs(scored[0] - scored[1]), nan=np.inf)
    return differences


def _complete_agreeing(
    differences: np.ndarray, probe: np.ndarray, tolerance: float, may_refuse_missing: bool
) -> np.ndarray:
    """The probe rows without missing values, where only rows with one differ and the version
    may refuse them; else the refusal, with the largest difference."""
    holes = _missing_rows(probe)
    complete = ~holes
    only_missing_differ = complete.any() and differences[complete].max() <= tolerance
    if may_refuse_missing and holes.any() and only_missing_differ:
        served: np.ndarray = probe[complete]
        return served
    worst = int(np.argmax(differences))
    raise ArtifactRejected(
        f"ONNX scores differ from scikit-learn's by up to {differences[worst]:.3g} on "
        f"{len(probe)} probe rows, above the tolerance {tolerance:g}"
        + (" (the largest on a row with a missing value)" if holes[worst] else "")
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


def _missing_rows(probe: np.ndarray) -> np.ndarray:
    """Which probe rows hold a missing value (None, or NaN)."""
    if probe.dtype != object:
        return np.asarray(np.isnan(probe).any(axis=1))
    return np.array([any(map(is_missing, row)) for row in probe.tolist()], dtype=bool)


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
