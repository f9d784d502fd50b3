"""Live reload, beside the consume loop: control-topic triggers plus a periodic active-key check.

A control message is a trigger, not the truth: on any message, and every `active_poll_s`,
the reloader re-reads the active key in Redis. A new version is loaded, verified and warmed
up here, then swapped in; on failure the current model stays and the reason is logged and kept
for health reporting.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import redis
import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from worker.errors import ArtifactRejected, RegistryError
from worker.models import ModelHolder, load_version
from worker.registry import Registry, RegistryEntry
from worker.settings import Settings

log = structlog.get_logger(__name__)


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


class ModelReloader:
    """Owns its control-topic consumer (no group: every worker reads every message)."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        holder: ModelHolder,
        control_consumer: KafkaConsumer,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._holder = holder
        self._consumer = control_consumer
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-reloader", daemon=True)
        self._failed_version: str | None = None
        self.last_error: str | None = None
        self.last_check_ok_at: float | None = None

    def start(self) -> None:
        self._follow_control_topic()
        self.check(forced=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._settings.active_poll_s + 5)
        self._consumer.close()

    def _follow_control_topic(self) -> None:
        partitions = self._consumer.partitions_for_topic(self._settings.control_topic) or {0}
        assigned = [TopicPartition(self._settings.control_topic, p) for p in sorted(partitions)]
        self._consumer.assign(assigned)
        self._consumer.seek_to_end(*assigned)

    def _run(self) -> None:
        next_check = time.monotonic() + self._settings.active_poll_s
        while not self._stopping.is_set():
            wait_ms = max(0.0, next_check - time.monotonic()) * 1000
            triggered = self._poll_control(int(min(wait_ms, 1000)))
            if triggered or time.monotonic() >= next_check:
                self.check(forced=triggered)
                next_check = time.monotonic() + self._settings.active_poll_s

    def _poll_control(self, timeout_ms: int) -> bool:
        try:
            batches: dict[Any, list[Any]] = self._consumer.poll(timeout_ms=timeout_ms)
        except KafkaError as exc:
            log.warning("control.poll_failed", error=str(exc))
            self._stopping.wait(1.0)
            return False
        messages = [record for records in batches.values() for record in records]
        for record in messages:
            log.info("control.received", message=_describe(record.value))
        return bool(messages)

    def check(self, forced: bool = False) -> None:
        """Re-read the active key; load and swap if it names another version.

        `forced` (a control message) retries a version that failed before; the periodic check
        does not, so a broken version is reported once rather than every few seconds.
        """
        try:
            active = self._registry.active_version()
        except redis.RedisError as exc:
            self._note_error(f"redis: {exc}", "reload.check_failed")
            return
        self.last_check_ok_at = time.time()
        current = self._holder.current()
        if active is None:
            return
        if current is not None and current.version == active:
            self._failed_version, self.last_error = None, None
            return
        if active == self._failed_version and not forced:
            return
        self._load(active)

    def _load(self, version: str) -> None:
        started = time.monotonic()
        try:
            model = load_version(self._registry, version, self._settings.signing_key)
        except (RegistryError, ArtifactRejected) as exc:
            self._failed_version = version
            self._note_error(f"{version}: {exc}", "model.reload_failed", version=version)
            return
        except redis.RedisError as exc:
            self._note_error(f"redis: {exc}", "reload.check_failed", version=version)
            return
        previous = self._holder.current()
        self._holder.swap(model)
        self._failed_version = None
        self.last_error = None
        log.info(
            "model.loaded",
            model_version=version,
            sha256=model.sha256,
            previous=previous.version if previous else None,
            ms=round((time.monotonic() - started) * 1000, 1),
        )

    def _note_error(self, message: str, event: str, **fields: object) -> None:
        self.last_error = message
        log.error(event, reason=message, **fields)


def _describe(value: bytes | None) -> object:
    try:
        return orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return {"unparsed": (value or b"")[:200].decode("utf-8", "replace")}
