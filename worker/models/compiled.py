"""Compiled models: a fitted estimator as ONNX, checked against scikit-learn before it is
stored, and scored with onnxruntime.

Why: loading a joblib artifact runs code (its digest and signature say who published it, not
that it is harmless), while an ONNX graph is data; and onnxruntime scores tree ensembles about
twice as fast as scikit-learn. Not every model: a gradient boosting was measured slower, so
`--format both` times both runtimes on the probe rows and records the faster.

ONNX tree ensembles compute in float32, so scores may differ from scikit-learn's in the sixth
decimal; the largest difference on the probe rows is measured, refused above the tolerance,
and stored with the version.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from typing import Any, Literal

import numpy as np

from worker.errors import ArtifactRejected
from worker.models.artifacts import EstimatorInfo
from worker.models.scoring import ModelKind, ScoreFn, score_function

Runtime = Literal["joblib", "onnx"]
PROBE_ROWS = 2000  # rows the fidelity check and the timings score
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

    @property
    def faster(self) -> Runtime:
        return "onnx" if self.onnx_us < self.joblib_us else "joblib"


def compile_estimator(
    estimator: Any, info: EstimatorInfo, probe: np.ndarray, tolerance: float
) -> Compiled:
    """Convert, then score the probe rows with both runtimes and refuse a difference above
    `tolerance`; raises ArtifactRejected naming what failed."""
    try:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError:
        raise ArtifactRejected(f"--format onnx needs skl2onnx: {_INSTALL_HINT}") from None
    # the probabilities as a plain tensor, not ZipMap's list of dicts
    options = {"zipmap": False} if info.kind == "classifier" else None
    try:
        graph = to_onnx(
            estimator,
            initial_types=[("input", FloatTensorType([None, len(info.features)]))],
            options=options,
        )
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ArtifactRejected(
            f"{info.estimator_class} cannot be converted to ONNX: {type(exc).__name__}: "
            f"{first_line}"
        ) from None
    data = graph.SerializeToString()
    onnx_score = onnx_score_function(data, info.kind, threads=1)
    joblib_score = score_function(estimator, info.kind)
    difference = float(np.max(np.abs(onnx_score(probe) - joblib_score(probe))))
    if not difference <= tolerance:
        raise ArtifactRejected(
            f"ONNX scores differ from scikit-learn's by up to {difference:.3g} on "
            f"{len(probe)} probe rows, above the tolerance {tolerance:g}"
        )
    opset = max(op.version for op in graph.opset_import if op.domain in ("", "ai.onnx"))
    return Compiled(
        data,
        opset,
        difference,
        len(probe),
        _us_per_event(joblib_score, probe),
        _us_per_event(onnx_score, probe),
    )


def onnx_score_function(data: bytes, kind: ModelKind, threads: int) -> ScoreFn:
    """A session over the ONNX bytes, with `threads` threads for one call (the worker's
    processes are the parallelism, so one by default); one score per row, as float64."""
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
    input_name = session.get_inputs()[0].name
    output = "probabilities" if kind == "classifier" else session.get_outputs()[0].name

    def score(matrix: np.ndarray) -> np.ndarray:
        (result,) = session.run([output], {input_name: matrix.astype(np.float32, copy=False)})
        values = np.asarray(result, dtype=np.float64)
        return values[:, 1] if kind == "classifier" else values.reshape(len(matrix))

    return score


def probe_rows(estimator: Any, n_features: int, reference: np.ndarray | None) -> np.ndarray:
    """The rows the fidelity check scores: the reference rows when given (the first
    PROBE_ROWS), else rows drawn uniformly within each feature's range as the model shows it
    (a tree's split thresholds, widened by a tenth; a leading StandardScaler's mean ± 3
    standard deviations), else within ±DEFAULT_RANGE."""
    if reference is not None and len(reference):
        return np.asarray(reference[:PROBE_ROWS], dtype=np.float64)
    low, high = feature_ranges(estimator, n_features)
    rng = np.random.default_rng(0)
    return rng.uniform(low, high, size=(PROBE_ROWS, n_features))


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
