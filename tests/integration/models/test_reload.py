"""Live reload: control messages, hand-set keys, refusals that keep the current model."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaProducer

from tests.conftest import (
    SteadyStream,
    TopicReader,
    artifact_bytes,
    run_scorer,
    send_events,
    wait_until,
)
from worker.models.artifacts import EstimatorInfo, inspect_estimator
from worker.models.registry import Registry
from worker.settings import Settings
from worker.tools.synthetic import FEATURES, feature_rows

pytestmark = pytest.mark.integration


def test_control_message_swaps_mid_stream_and_every_event_is_scored_by_the_version_it_names(
    settings: Settings,
    client_settings: Settings,
    publish: Any,
    logistic: Any,
    forest: Any,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
) -> None:
    slow_poll = client_settings.replace(active_poll_s=120.0)  # only the control message can trigger
    publish(logistic, "v1")
    publish(forest, "v2", activate=False)
    worker = worker_factory(slow_poll)
    wait_until(worker.assigned, what="partitions assigned")

    rows = feature_rows(20000, seed=11)
    stream = SteadyStream(producer, settings.input_topic, rows)  # the swap happens mid-stream
    wait_until(lambda: len(reader.predictions) > 500, what="v1 predictions flowing")
    activated = run_scorer(slow_poll, "model", "activate", "v2")
    assert activated.returncode == 0, activated.stderr
    wait_until(lambda: worker.model_version() == "v2", timeout=10, what="swap to v2")
    wait_until(
        lambda: any(p["model_version"] == "v2" for p in reader.predictions),
        what="v2 predictions flowing",
    )
    rows = rows[: stream.stop()]
    wait_until(lambda: len(reader.scored_ids()) == len(rows), what="every event scored")

    models = {"v1": logistic, "v2": forest}
    expected = {v: m.predict_proba(rows)[:, 1] for v, m in models.items()}
    versions = {p["model_version"] for p in reader.predictions}
    assert versions == {"v1", "v2"}
    for prediction in reader.predictions:
        index = int(prediction["event_id"].split("-")[1])
        assert abs(prediction["score"] - expected[prediction["model_version"]][index]) <= 1e-9


def test_a_hand_set_active_key_is_picked_up_by_polling(
    settings: Settings,
    publish: Any,
    logistic: Any,
    forest: Any,
    redis_client: Any,
    worker_factory: Any,
) -> None:
    publish(logistic, "v1")
    publish(forest, "v2", activate=False)
    worker = worker_factory(settings)
    wait_until(lambda: worker.model_version() == "v1", what="v1 loaded")
    redis_client.set(settings.active_key, "v2")
    wait_until(
        lambda: worker.model_version() == "v2",
        timeout=settings.active_poll_s + 5,
        what="v2 loaded by polling",
    )


def corrupt_digest(
    registry: Registry, redis_client: Any, settings: Settings, model: Any, tmp_path: Path
) -> None:
    registry.publish(artifact_bytes(model, tmp_path), "bad", inspect_estimator(model, FEATURES))
    redis_client.hset(f"{settings.registry_prefix}:version:bad", "artifact", b"tampered")


def unpicklable(
    registry: Registry, redis_client: Any, settings: Settings, model: Any, tmp_path: Path
) -> None:
    registry.publish(b"definitely not joblib", "bad", inspect_estimator(model, FEATURES))


def wrong_features(
    registry: Registry, redis_client: Any, settings: Settings, model: Any, tmp_path: Path
) -> None:
    info = EstimatorInfo(("f0", "f1", "f2"), "classifier", "LogisticRegression")
    registry.publish(artifact_bytes(model, tmp_path), "bad", info)


def missing_version(
    registry: Registry, redis_client: Any, settings: Settings, model: Any, tmp_path: Path
) -> None:
    pass  # "bad" is simply never published


@pytest.mark.parametrize(
    ("prepare", "reason"),
    [
        (missing_version, "bad is not in the registry"),
        (corrupt_digest, "sha256 mismatch"),
        (unpicklable, "does not load"),
        (wrong_features, "expects 20 features, 3 are named"),
    ],
)
def test_a_version_that_cannot_load_keeps_the_current_model_scoring(
    prepare: Any,
    reason: str,
    settings: Settings,
    registry: Registry,
    redis_client: Any,
    publish: Any,
    logistic: Any,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
    tmp_path: Path,
) -> None:
    publish(logistic, "v1")
    worker = worker_factory(settings)
    wait_until(lambda: worker.model_version() == "v1", what="v1 loaded")
    prepare(registry, redis_client, settings, logistic, tmp_path)
    redis_client.set(settings.active_key, "bad")
    wait_until(
        lambda: reason in (worker.worker.reloader.last_error or ""),
        timeout=settings.active_poll_s + 5,
        what=f"reload failure: {reason}",
    )

    ids = send_events(producer, settings.input_topic, feature_rows(50, seed=2))
    wait_until(lambda: reader.scored_ids() == set(ids), what="scoring goes on with v1")
    assert {p["model_version"] for p in reader.predictions} == {"v1"}
    assert worker.model_version() == "v1" and worker.thread.is_alive()


def test_with_a_signing_key_only_signed_versions_load(
    settings: Settings,
    registry: Registry,
    logistic: Any,
    redis_client: Any,
    worker_factory: Any,
    tmp_path: Path,
) -> None:
    keyed = settings.replace(signing_key="k-123")
    info = inspect_estimator(logistic, FEATURES)
    registry.publish(artifact_bytes(logistic, tmp_path), "signed", info, signing_key="k-123")
    registry.publish(artifact_bytes(logistic, tmp_path), "unsigned", info)
    registry.publish(artifact_bytes(logistic, tmp_path), "other-key", info, signing_key="nope")
    registry.activate("signed")
    worker = worker_factory(keyed)
    wait_until(lambda: worker.model_version() == "signed", what="signed version loaded")
    for version, reason in (("unsigned", "unsigned"), ("other-key", "does not verify")):
        redis_client.set(settings.active_key, version)
        wait_until(
            lambda r=reason: r in (worker.worker.reloader.last_error or ""),  # type: ignore[misc]
            timeout=settings.active_poll_s + 5,
            what=f"refusal of {version}",
        )
        assert worker.model_version() == "signed"


def test_without_an_active_version_the_worker_waits_then_starts(
    settings: Settings,
    publish: Any,
    logistic: Any,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
) -> None:
    ids = send_events(producer, settings.input_topic, feature_rows(100, seed=9))
    worker = worker_factory(settings)
    wait_until(lambda: worker.worker.reloader is not None, what="reloader started")
    threading.Event().wait(2 * settings.active_poll_s)
    assert worker.worker.loop is None and reader.predictions == []
    assert worker.thread.is_alive()
    publish(logistic, "v1")
    wait_until(lambda: reader.scored_ids() == set(ids), what="scoring after activation")
    scores = np.array([p["score"] for p in reader.predictions])
    assert np.isfinite(scores).all()
