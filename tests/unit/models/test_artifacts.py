"""Artifact checks: digest and signature, loading, inspection, warm-up, score function."""

from __future__ import annotations

import io
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from worker.errors import ArtifactRejected
from worker.models.artifacts import (
    inspect_estimator,
    load_estimator,
    sha256_hex,
    signature_hex,
    verify_artifact,
    warm_up,
)
from worker.models.scoring import score_function

ROWS = np.random.default_rng(0).normal(size=(200, 3))
LABELS = (ROWS[:, 0] + ROWS[:, 1] > 0).astype(int)
NAMES = ["a", "b", "c"]


def dumped(model: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def classifier() -> LogisticRegression:
    return LogisticRegression().fit(ROWS, LABELS)


def test_matching_digest_passes_and_any_changed_byte_is_refused() -> None:
    data = b"model bytes"
    verify_artifact(data, sha256_hex(data), "", "")
    with pytest.raises(ArtifactRejected, match="sha256 mismatch"):
        verify_artifact(data + b"!", sha256_hex(data), "", "")


def test_with_a_signing_key_only_a_correct_signature_passes() -> None:
    data = b"model bytes"
    digest = sha256_hex(data)
    verify_artifact(data, digest, signature_hex(data, "k1"), "k1")
    with pytest.raises(ArtifactRejected, match="unsigned"):
        verify_artifact(data, digest, "", "k1")
    with pytest.raises(ArtifactRejected, match="does not verify"):
        verify_artifact(data, digest, signature_hex(data, "other"), "k1")


@pytest.mark.parametrize("data", [b"", b"not a pickle", b"\x80\x04\x95garbage"])
def test_bytes_that_do_not_unpickle_are_rejected(data: bytes) -> None:
    with pytest.raises(ArtifactRejected, match="does not load"):
        load_estimator(data)


def test_a_fitted_binary_classifier_with_named_features_is_accepted(classifier: Any) -> None:
    info = inspect_estimator(load_estimator(dumped(classifier)), NAMES)
    assert info.features == ("a", "b", "c")
    assert info.kind == "classifier"
    assert info.estimator_class == "sklearn.linear_model._logistic.LogisticRegression"


def test_a_regressor_scores_its_prediction() -> None:
    model = LinearRegression().fit(ROWS, ROWS[:, 0] * 2)
    info = inspect_estimator(model, NAMES)
    assert info.kind == "regressor"
    np.testing.assert_allclose(score_function(model, "regressor")(ROWS), model.predict(ROWS))


def test_a_classifier_scores_the_positive_class_probability(classifier: Any) -> None:
    scores = score_function(classifier, "classifier")(ROWS)
    np.testing.assert_array_equal(scores, classifier.predict_proba(ROWS)[:, 1])


def test_fitted_feature_names_are_the_order_and_a_different_list_is_refused(
    classifier: Any,
) -> None:
    named = LogisticRegression().fit(ROWS, LABELS)
    named.feature_names_in_ = np.array(["x", "y", "z"], dtype=object)
    assert inspect_estimator(named).features == ("x", "y", "z")
    with pytest.raises(ArtifactRejected, match="differ from the estimator's feature_names_in_"):
        inspect_estimator(named, ["z", "y", "x"])


@pytest.mark.parametrize(
    ("model", "features", "message"),
    [
        (LogisticRegression(), NAMES, "not fitted"),
        ("a string", NAMES, "has no predict method"),
        (LogisticRegression().fit(ROWS, LABELS), None, "unknown feature order"),
        (LogisticRegression().fit(ROWS, LABELS), ["a", "a", "b"], "feature names repeat"),
        (LogisticRegression().fit(ROWS, LABELS), ["a", "b"], "expects 3 features, 2 are named"),
        (LogisticRegression().fit(ROWS, np.arange(200) % 3), NAMES, "must be binary"),
    ],
)
def test_estimators_the_worker_cannot_serve_are_refused(
    model: Any, features: list[str] | None, message: str
) -> None:
    with pytest.raises(ArtifactRejected, match=message):
        inspect_estimator(model, features)


def test_warm_up_refuses_a_model_that_fails_or_returns_no_finite_score() -> None:
    def broken(matrix: np.ndarray) -> np.ndarray:
        raise ValueError("boom")

    with pytest.raises(ArtifactRejected, match="warm-up prediction failed: ValueError: boom"):
        warm_up(broken, np.zeros((1, 3)))
    with pytest.raises(ArtifactRejected, match="not one finite score"):
        warm_up(lambda matrix: np.array([np.nan]), np.zeros((1, 3)))
    warm_up(lambda matrix: np.array([0.5]), np.zeros((1, 3)))
