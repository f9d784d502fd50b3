"""Helpers that feed the monitors predictions and labels and read back what they did."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from worker.infra.clients import connect_redis, ensure_topics
from worker.lifecycle.join import JoinStore
from worker.models.registry import Registry
from worker.settings import Settings


@pytest.fixture
def labels_topic(settings: Settings) -> str:
    """Created before a test sends labels: the monitor that would create it may not be up."""
    ensure_topics(settings, labels=True)
    return settings.labels_topic


def store_of(settings: Settings) -> JoinStore:
    return JoinStore.for_settings(connect_redis(settings), settings)


def send_labels(producer: KafkaProducer, topic: str, labels: dict[str, int]) -> None:
    for event_id, label in labels.items():
        producer.send(topic, orjson.dumps({"event_id": event_id, "label": label, "ts": 1.0}))
    producer.flush()


def send_predictions(
    producer: KafkaProducer, topic: str, version: str, arm: str, scores: dict[str, float]
) -> None:
    for event_id, score in scores.items():
        record = {"event_id": event_id, "model_version": version, "score": score, "arm": arm}
        producer.send(topic, key=event_id.encode(), value=orjson.dumps(record))
    producer.flush()


def guard_changes(registry: Registry, action: str) -> list[dict[str, Any]]:
    return [
        c for c in registry.changes(100) if c["action"] == action and c["by"] == "scorer-monitor"
    ]
