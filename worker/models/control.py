"""The control topic's messages: the trigger an operator command publishes after it changes
the truth in Redis. Workers re-read Redis on any message (see reloader.py), whatever its type:
`activate` (a new active version) or `route` (a canary or shadow change)."""

from __future__ import annotations

import time

import orjson
from kafka import KafkaProducer

from worker.models.entry import RegistryEntry
from worker.models.route import Route


def activation_message(entry: RegistryEntry) -> bytes:
    return orjson.dumps(
        {
            "type": "activate",
            "version": entry.version,
            "sha256": entry.served_sha256,
            "issued_at": time.time(),
        }
    )


def route_message(action: str, route: Route) -> bytes:
    """`route` is the route after the change (`{}`: none)."""
    return orjson.dumps(
        {"type": "route", "action": action, "route": route.as_json(), "issued_at": time.time()}
    )


def announce(producer: KafkaProducer, topic: str, message: bytes, timeout_s: float) -> None:
    """Publish a trigger and wait for the broker's acknowledgement."""
    producer.send(topic, message).get(timeout=timeout_s)
