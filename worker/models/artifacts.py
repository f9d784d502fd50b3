"""Artifact integrity and inspection: SHA-256 and HMAC checks, loading, feature order, warm-up.

Loading a joblib file runs code, so a worker loads only bytes whose digest (and signature,
when a signing key is set) matches the registry entry.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.errors import ArtifactRejected
from worker.models.scoring import ModelKind, ScoreFn


@dataclass(frozen=True)
class EstimatorInfo:
    """What the registry records about an estimator besides its bytes."""

    features: tuple[str, ...]
    kind: ModelKind
    estimator_class: str


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def signature_hex(data: bytes, signing_key: str) -> str:
    return hmac.new(signing_key.encode(), data, hashlib.sha256).hexdigest()


def verify_artifact(data: bytes, sha256: str, signature: str, signing_key: str) -> None:
    """Refuse bytes whose digest differs, or whose signature is missing or wrong when keyed."""
    actual = sha256_hex(data)
    if not hmac.compare_digest(actual, sha256):
        raise ArtifactRejected(
            f"sha256 mismatch: registry has {sha256[:12]}…, artifact is {actual[:12]}…"
        )
    if not signing_key:
        return
    if not signature:
        raise ArtifactRejected("artifact is unsigned but a signing key is set")
    if not hmac.compare_digest(signature_hex(data, signing_key), signature):
        raise ArtifactRejected("artifact signature does not verify with the signing key")


def load_estimator(data: bytes) -> Any:
    """Unpickle an artifact; any failure (truncated, not joblib, missing class) is a rejection."""
    import joblib  # here, not at the top: the registry's commands never unpickle

    try:
        return joblib.load(io.BytesIO(data))
    except Exception as exc:
        raise ArtifactRejected(f"artifact does not load: {type(exc).__name__}: {exc}") from None


def inspect_estimator(estimator: Any, features: Sequence[str] | None = None) -> EstimatorInfo:
    """Check the estimator is fitted, binary if a classifier, and has a known feature order."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if not hasattr(estimator, "predict"):
        raise ArtifactRejected(f"{type(estimator).__name__} has no predict method")
    try:
        check_is_fitted(estimator)
    except NotFittedError as exc:
        raise ArtifactRejected(f"estimator is not fitted: {exc}") from None
    except Exception as exc:  # not an estimator scikit-learn can inspect at all
        raise ArtifactRejected(
            f"{type(estimator).__name__} is not a scikit-learn estimator: {type(exc).__name__}"
        ) from None
    kind: ModelKind = "classifier" if hasattr(estimator, "predict_proba") else "regressor"
    if kind == "classifier" and len(getattr(estimator, "classes_", ())) != 2:
        raise ArtifactRejected(
            "a classifier must be binary: score is the positive-class probability"
        )
    names = _feature_order(estimator, features)
    return EstimatorInfo(names, kind, f"{type(estimator).__module__}.{type(estimator).__name__}")


def _feature_order(estimator: Any, features: Sequence[str] | None) -> tuple[str, ...]:
    fitted_names = getattr(estimator, "feature_names_in_", None)
    if fitted_names is not None:
        names = tuple(str(name) for name in fitted_names)
        if features is not None and tuple(features) != names:
            raise ArtifactRejected(
                f"features {list(features)} differ from the estimator's "
                f"feature_names_in_ {list(names)}"
            )
    elif features:
        names = tuple(features)
    else:
        raise ArtifactRejected(
            "unknown feature order: the estimator has no feature_names_in_; pass --features a,b,..."
        )
    if len(set(names)) != len(names):
        raise ArtifactRejected(f"feature names repeat: {list(names)}")
    expected = getattr(estimator, "n_features_in_", len(names))
    if expected != len(names):
        raise ArtifactRejected(f"estimator expects {expected} features, {len(names)} are named")
    return names


def warm_up(score: ScoreFn, row: np.ndarray) -> None:
    """One prediction on the version's warm-up row (a decoded one-row matrix): proves the
    model runs before it takes traffic."""
    try:
        output = score(row)
    except Exception as exc:
        raise ArtifactRejected(f"warm-up prediction failed: {type(exc).__name__}: {exc}") from None
    if output.shape != (1,) or not np.isfinite(output).all():
        raise ArtifactRejected(f"warm-up prediction is not one finite score: {output!r}")
