"""The control topic's message: the trigger an operator command publishes after it changes
the truth in Redis. Workers re-read Redis on any message (see reloader.py)."""

from __future__ import annotations

import time

import orjson
from kafka import KafkaProducer

from worker.models.registry import RegistryEntry


def control_message(entry: RegistryEntry) -> bytes:
    return orjson.dumps(
        {
            "type": "activate",
            "version": entry.version,
            "sha256": entry.sha256,
            "issued_at": time.time(),
        }
    )


def announce(producer: KafkaProducer, topic: str, entry: RegistryEntry, timeout_s: float) -> None:
    """Publish an activation trigger and wait for the broker's acknowledgement."""
    producer.send(topic, control_message(entry)).get(timeout=timeout_s)
