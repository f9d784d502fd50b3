"""The loaded models and the reference the loop reads once per batch.

Every model is fetched, verified, loaded and warmed up completely before `ModelHolder.swap`
publishes the `Serving` that uses it; the loop then picks it up at its next batch. Swapping a
reference is atomic in CPython, so each arm of a batch is scored by exactly one whole version.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import structlog

from worker.models.artifacts import inspect_estimator, load_estimator, verify_artifact, warm_up
from worker.models.compiled import onnx_score_function
from worker.models.entry import RegistryEntry
from worker.models.features import FeatureSchema, rows_matrix
from worker.models.profile import ReferenceProfile
from worker.models.registry import Registry
from worker.models.route import Route
from worker.models.scoring import ModelKind, ScoreFn, score_function
from worker.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    version: str
    sha256: str
    schema: FeatureSchema  # how its events are read: names, kinds, missing values
    kind: ModelKind
    score: ScoreFn
    profile: ReferenceProfile | None = None  # drift: the bins its live rows are counted in

    @property
    def features(self) -> tuple[str, ...]:
        return self.schema.names


def load_version(registry: Registry, version: str, settings: Settings) -> LoadedModel:
    """Fetch a version from the registry and make it ready to score with the runtime its
    entry names (ONNX where `allow_pickle` is false), or raise.

    Raises RegistryError for an unknown version and ArtifactRejected for anything wrong with
    the artifact itself; redis errors propagate for the caller to treat as transient.
    """
    entry = registry.entry(version)
    runtime = entry.runtime_for(settings.allow_pickle)
    data = registry.artifact(version, runtime)
    signing_key = settings.signing_key
    schema = entry.schema
    if runtime == "onnx" and entry.onnx is not None:
        verify_artifact(data, entry.onnx.sha256, entry.onnx.signature, signing_key)
        score = onnx_score_function(
            data, entry.kind, settings.onnx_threads, schema, entry.onnx.missing_text
        )
        kind, sha256 = entry.kind, entry.onnx.sha256
    else:
        verify_artifact(data, entry.sha256, entry.signature, signing_key)
        estimator = load_estimator(data)
        info = inspect_estimator(estimator, entry.features)  # refuses features that differ
        score = score_function(estimator, info.kind, schema)
        kind, sha256 = info.kind, entry.sha256
    warm_up(score, warm_up_rows(entry))
    profile = reference_profile(registry, version)
    if profile is not None and profile.features != schema.names:
        log.warning(
            "model.reference_mismatch",
            model_version=version,
            error="the reference profile's features are not the model's: drift not measured",
        )
        profile = None
    return LoadedModel(version, sha256, schema, kind, score, profile)


def warm_up_rows(entry: RegistryEntry) -> np.ndarray:
    """The row publish proved the version on, decoded; a zero row for entries from before."""
    row = entry.warm_up_row or (0.0,) * len(entry.features)
    return rows_matrix(entry.schema, [row])


def reference_profile(registry: Registry, version: str) -> ReferenceProfile | None:
    """The version's reference profile; one that cannot be read is logged, not fatal: the
    version scores as well without it, only its drift goes unmeasured."""
    raw = registry.reference(version)
    if raw is None:
        return None
    try:
        return ReferenceProfile.from_json(raw)
    except ValueError as exc:
        log.warning("model.reference_unreadable", model_version=version, error=str(exc))
        return None


@dataclass(frozen=True)
class Serving:
    """What scores a batch: the primary, and the route's versions when the route is in effect.

    `route` is the route as applied here: empty when the route key names none, or when a
    version it names could not be loaded (`route_error` says why; the primary takes it all).
    """

    primary: LoadedModel
    canary: LoadedModel | None = None
    shadows: tuple[LoadedModel, ...] = ()
    route: Route = field(default_factory=Route)  # its canary's share, when `canary` is set
    route_error: str | None = None

    @property
    def canary_percent(self) -> float:
        return self.route.canary.percent if self.route.canary else 0.0

    @property
    def canary_buckets(self) -> int:
        """Events whose bucket is below this go to the canary (worker/stream/arms.py)."""
        return self.route.canary.buckets if self.route.canary else 0

    def roles(self) -> list[tuple[str, LoadedModel]]:
        """Each version serving, with its role: primary, canary or shadow."""
        roles = [("primary", self.primary)]
        if self.canary is not None:
            roles.append(("canary", self.canary))
        return roles + [("shadow", model) for model in self.shadows]


class ModelHolder:
    """What serves now, set by the reloader thread and read by the loop."""

    def __init__(self) -> None:
        self._serving: Serving | None = None
        self._loaded = threading.Event()

    def current(self) -> LoadedModel | None:
        """The primary."""
        serving = self._serving
        return serving.primary if serving else None

    def serving(self) -> Serving | None:
        return self._serving

    def swap(self, serving: Serving) -> None:
        self._serving = serving
        self._loaded.set()

    def wait_loaded(self, timeout_s: float) -> LoadedModel | None:
        self._loaded.wait(timeout_s)
        return self.current()
