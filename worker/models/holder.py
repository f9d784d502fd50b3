"""The loaded model and the reference the loop reads once per batch.

A model is fetched, verified, loaded and warmed up completely before `ModelHolder.swap`
publishes it; the loop then picks it up at its next batch. Swapping a reference is atomic
in CPython, so a batch is always scored by exactly one whole version.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from worker.models.artifacts import inspect_estimator, load_estimator, verify_artifact, warm_up
from worker.models.registry import Registry
from worker.models.scoring import ModelKind, ScoreFn, score_function


@dataclass(frozen=True)
class LoadedModel:
    version: str
    sha256: str
    features: tuple[str, ...]
    kind: ModelKind
    score: ScoreFn


def load_version(registry: Registry, version: str, signing_key: str) -> LoadedModel:
    """Fetch a version from the registry and make it ready to score, or raise.

    Raises RegistryError for an unknown version and ArtifactRejected for anything wrong with
    the artifact itself; redis errors propagate for the caller to treat as transient.
    """
    entry = registry.entry(version)
    data = registry.artifact(version)
    verify_artifact(data, entry.sha256, entry.signature, signing_key)
    estimator = load_estimator(data)
    info = inspect_estimator(estimator, entry.features)  # refuses features that differ
    score = score_function(estimator, info.kind)
    warm_up(score, len(info.features))
    return LoadedModel(version, entry.sha256, info.features, info.kind, score)


class ModelHolder:
    """The current model, set by the reloader thread and read by the loop."""

    def __init__(self) -> None:
        self._model: LoadedModel | None = None
        self._loaded = threading.Event()

    def current(self) -> LoadedModel | None:
        return self._model

    def swap(self, model: LoadedModel) -> None:
        self._model = model
        self._loaded.set()

    def wait_loaded(self, timeout_s: float) -> LoadedModel | None:
        self._loaded.wait(timeout_s)
        return self._model
