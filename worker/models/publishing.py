"""The one publish path: a fitted estimator into the registry with its checks, its ONNX
conversion when asked for, and its reference profile for drift. `scorer model publish` and the
retrainer both go through it, so a retrained version is stored like any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from worker.errors import ArtifactRejected
from worker.models.artifacts import EstimatorInfo, inspect_estimator
from worker.models.entry import RegistryEntry
from worker.models.features import FeatureKind, FeatureSchema, estimator_kinds, resolve_kinds
from worker.models.probe import MissingPolicy, probe_version
from worker.models.registry import CanaryRequest, Registry

if TYPE_CHECKING:
    from worker.models.compiled import Compiled, Runtime
    from worker.models.profile import ReferenceProfile

Format = Literal["joblib", "onnx", "both"]
DEFAULT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Published:
    entry: RegistryEntry
    compiled: Compiled | None
    profile: ReferenceProfile | None
    notice: str = ""  # what publish decided that the operator did not ask for


_REFUSED_FOR_ONNX = (
    "missing values refused: the ONNX graph does not score them as scikit-learn does "
    "(--format joblib takes them)"
)


def publish_estimator(
    registry: Registry,
    data: bytes,
    estimator: Any,
    version: str,
    *,
    features: Sequence[str] | None,
    note: str,
    signing_key: str,
    fmt: Format = "joblib",
    tolerance: float = DEFAULT_TOLERANCE,
    reference_rows: np.ndarray | None = None,
    training: dict[str, object] | None = None,
    canary: CanaryRequest | None = None,
    runtime: Runtime | None = None,
    feature_kinds: Mapping[str, FeatureKind] | None = None,
    missing: MissingPolicy | None = None,
) -> Published:
    """Store `estimator` (whose joblib bytes are `data`) as `format`; for onnx and both, the
    conversion is checked on the reference rows (else rows within the model's feature ranges)
    and workers use whichever runtime scored faster (onnx: ONNX only), or `runtime` if given.

    Each feature's kind is `feature_kinds`' (the operator's), else what the estimator reveals,
    else a number; probe rows then prove a worker can score it (probe.py), and find whether
    it takes missing values unless `missing` says."""
    info = inspect_estimator(estimator, features)
    kinds = resolve_kinds(info.features, feature_kinds, estimator_kinds(estimator))
    probed = probe_version(estimator, info.kind, info.features, kinds, missing)
    compiled = None
    serve: Runtime = "joblib"
    notice = ""
    if fmt != "joblib":
        checked_on = None if reference_rows is None else _takeable(reference_rows, probed.schema)
        compiled = compile_of(
            estimator, info, probed.schema, checked_on, tolerance, may_refuse=missing is None
        )
        if compiled.refuses_missing:
            probed, notice = probed.refusing_missing(), _REFUSED_FOR_ONNX
        serve = "onnx" if fmt == "onnx" else compiled.faster
    serve = runtime or serve
    profile = None
    if reference_rows is not None:
        reference_rows = _takeable(reference_rows, probed.schema)
        profile = reference_of(reference_rows, estimator, info, probed.schema)
    entry = registry.publish(
        data if fmt != "onnx" else None,
        version,
        info,
        note,
        signing_key,
        reference=profile.to_json() if profile else None,
        compiled=compiled,
        runtime=serve,
        training=training,
        canary=canary,
        probed=probed,
    )
    return Published(entry, compiled, profile, notice)


def reference_of(
    rows: np.ndarray, estimator: object, info: EstimatorInfo, schema: FeatureSchema
) -> ReferenceProfile:
    """The drift reference: the rows (decoded as a worker decodes them, None or NaN where
    missing), and the model's own scores on them as a worker computes them. A version that
    does not take missing values is profiled on the rows that have none."""
    from worker.models.profile import build_profile
    from worker.models.scoring import score_function

    scores = score_function(estimator, info.kind, schema)(rows)
    return build_profile(
        rows,
        info.features,
        scores,
        category_features=schema.categories,
        missing=schema.accepts_missing,
    )


def _takeable(rows: np.ndarray, schema: FeatureSchema) -> np.ndarray:
    """The reference rows a worker would score: for a version that does not take missing
    values, those that have none (for its profile and its ONNX check alike)."""
    from worker.models.profile import missing_values

    if schema.accepts_missing:
        return rows
    complete = rows[~missing_values(rows).any(axis=1)]
    if not len(complete):
        raise ArtifactRejected(
            "every reference row has a missing value, and this version does not take them"
        )
    return complete


def compile_of(
    estimator: object,
    info: EstimatorInfo,
    schema: FeatureSchema,
    rows: np.ndarray | None,
    tolerance: float,
    *,
    may_refuse: bool = False,
) -> Compiled:
    """The ONNX conversion, checked on the reference rows or on rows drawn within the
    model's feature ranges, with unseen categories and missing values where they apply.
    `may_refuse`: `--missing` left missing values to the probe, so where the graph scores
    them unlike scikit-learn (a forest's converter drops the branches it learnt for NaN),
    the version refuses them, as every version compiled before missing values did."""
    from worker.models.compiled import compile_estimator
    from worker.models.fidelity_rows import probe_rows

    probe = probe_rows(estimator, schema, rows)
    return compile_estimator(
        estimator, info, probe, tolerance, schema, may_refuse_missing=may_refuse
    )
