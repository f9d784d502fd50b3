"""A running worker against the real broker and Redis: scores, keys, dead letters."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.partitioner.default import murmur2
from sklearn.base import BaseEstimator, ClassifierMixin

from tests.conftest import TopicReader, on_tansu, send_events, wait_until
from worker.infra.clients import client_options
from worker.settings import Settings
from worker.tools.synthetic import FEATURES, event_bytes, feature_rows

pytestmark = pytest.mark.integration


def test_predictions_equal_the_models_own_predict_proba(
    settings: Settings,
    client_settings: Settings,
    publish: Any,
    logistic: Any,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
) -> None:
    publish(logistic, "v1")
    rows = feature_rows(500, seed=7)
    ids = send_events(producer, settings.input_topic, rows)
    worker_factory(client_settings)
    wait_until(lambda: reader.scored_ids() == set(ids), what="a prediction for every event")

    expected = dict(zip(ids, logistic.predict_proba(rows)[:, 1], strict=True))
    for prediction in reader.predictions:
        assert prediction["model_version"] == "v1"
        assert prediction["_key"] == prediction["event_id"].encode()
        assert prediction["_partition"] == java_partition(prediction["_key"], settings)
        assert abs(prediction["score"] - expected[prediction["event_id"]]) <= 1e-9
        assert prediction["scored_at"] >= prediction["event_ts"]
    assert len(reader.predictions) == len(ids)
    assert reader.dead_letters == []


def test_events_without_a_key_are_scored_beside_keyed_ones(
    settings: Settings,
    client_settings: Settings,
    publish: Any,
    logistic: Any,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
) -> None:
    publish(logistic, "v1")
    rows = feature_rows(40, seed=5)
    for i, row in enumerate(rows):
        key = f"k-{i}".encode() if i % 2 else None
        producer.send(settings.input_topic, key=key, value=event_bytes(f"k-{i}", row))
    producer.flush()
    worker_factory(client_settings)
    ids = {f"k-{i}" for i in range(len(rows))}
    wait_until(lambda: reader.scored_ids() == ids, what="a prediction for every event")
    for prediction in reader.predictions:
        if prediction["_key"] is None:
            assert int(prediction["event_id"][2:]) % 2 == 0
        else:
            assert prediction["_key"] == prediction["event_id"].encode()
            assert prediction["_partition"] == java_partition(prediction["_key"], settings)


def allow_large_events(settings: Settings, topic: str, max_bytes: int) -> None:
    """What a pipeline that writes events larger than Kafka's 1 MiB default does: raise the
    topic's limit. Tansu has no such limit (and no AlterConfigs to ask)."""
    if on_tansu():
        return
    admin = KafkaAdminClient(**client_options(settings))
    try:
        limit = {"max.message.bytes": str(max_bytes)}
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=limit)])
        # the change reaches the broker through its metadata log, a moment after the answer:
        # on a busy machine a large event sent at once was refused
        wait_until(
            lambda: topic_config(admin, topic).get("max.message.bytes") == str(max_bytes),
            timeout=15,
            what="the topic's new size limit applied",
        )
    finally:
        admin.close()


def topic_config(admin: KafkaAdminClient, topic: str) -> dict[str, str]:
    """The topic's settings that differ from the broker's defaults, as the broker reports them."""
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    return {k: v["value"] for k, v in described.get("topic", {}).get(topic, {}).items()}


def java_partition(key: bytes, settings: Settings) -> int:
    """Where Kafka's Java producer puts a key (murmur2), so that every client of ours agrees
    with it and with each other on where a key's predictions go."""
    return int(murmur2(key) & 0x7FFFFFFF) % settings.topic_partitions


def test_every_bad_event_is_dead_lettered_with_its_reason_and_the_rest_scored(
    settings: Settings,
    client_settings: Settings,
    publish: Any,
    logistic: Any,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
) -> None:
    publish(logistic, "v1")
    good = {name: 0.5 for name in FEATURES}
    bad = {
        "invalid_utf8": b"\xff\xfe\xfd",
        "invalid_json": b'{"event_id": "x", ',
        "not_an_object": b"[1, 2, 3]",
        "missing_event_id": orjson.dumps({"features": good}),
        "invalid_event_id": orjson.dumps({"event_id": {"a": 1}, "features": good}),
        "invalid_ts": orjson.dumps({"event_id": "t", "ts": "yesterday", "features": good}),
        "missing_features": orjson.dumps({"event_id": "m"}),
        "missing_feature": orjson.dumps({"event_id": "m", "features": {"f0": 1.0}}),
        "non_numeric_feature": orjson.dumps({"event_id": "n", "features": good | {"f3": "1"}}),
        "non_finite_feature": b'{"event_id": "nan", "features": '
        + orjson.dumps(good)[:-1]
        + b', "f3": NaN}}',
        "too_large": orjson.dumps({"event_id": "big", "features": good, "pad": "x" * 3_000_000}),
    }
    allow_large_events(settings, settings.input_topic, 4_000_000)
    ids = send_events(producer, settings.input_topic, feature_rows(20, seed=3), prefix="ok")
    futures = {
        reason: producer.send(settings.input_topic, key=reason.encode(), value=value)
        for reason, value in bad.items()
    }
    send_events(producer, settings.input_topic, feature_rows(20, seed=4), prefix="ok2")
    producer.flush()
    worker = worker_factory(client_settings)

    wait_until(
        lambda: len(reader.dead_letters) == len(bad) and len(reader.predictions) == 40,
        what="every bad event dead-lettered and every good one scored",
    )
    assert set(ids) <= reader.scored_ids()
    for record in reader.dead_letters:
        headers = {name: value.decode() for name, value in record.headers}
        reason = record.key.decode()
        metadata = futures[reason].get()
        assert headers["error"] == reason
        assert headers["error_detail"]
        assert headers["source_topic"] == settings.input_topic
        assert int(headers["source_partition"]) == metadata.partition
        assert int(headers["source_offset"]) == metadata.offset
        assert headers["model_version"] == "v1"
        if reason == "too_large":
            assert int(headers["original_size"]) == len(bad[reason])
            assert record.value == bad[reason][: settings.max_event_bytes]
        else:
            assert record.value == bad[reason]
    assert worker.thread.is_alive() and worker.error is None


def test_a_model_that_raises_on_some_rows_dead_letters_only_those_rows(
    settings: Settings,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
    publish: Any,
) -> None:
    publish(RaisesOnLargeFirstFeature(), "picky")
    rows = feature_rows(30, seed=5)
    rows[:, 0] = np.where(np.arange(30) % 10 == 0, 1e6, rows[:, 0])
    ids = send_events(producer, settings.input_topic, rows)
    worker_factory(settings)
    wait_until(
        lambda: len(reader.predictions) + len(reader.dead_letters) == 30,
        what="each row scored or dead-lettered",
    )
    dead = {r.key.decode(): dict(r.headers)["error"] for r in reader.dead_letters}
    assert dead == {ids[i]: b"scoring_failed" for i in (0, 10, 20)}
    assert len(reader.scored_ids()) == 27


class RaisesOnLargeFirstFeature(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A fitted model whose predict_proba fails on a poison value in f0."""

    def __init__(self) -> None:
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = len(FEATURES)

    def fit(self, matrix: np.ndarray, labels: np.ndarray) -> RaisesOnLargeFirstFeature:
        return self

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        if (matrix[:, 0] > 1e5).any():
            raise ValueError("poison row")
        positive = 1 / (1 + np.exp(-matrix[:, 1]))
        return np.column_stack([1 - positive, positive])

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return self.predict_proba(matrix)[:, 1] > 0.5
