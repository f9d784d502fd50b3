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
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from worker.errors import ArtifactRejected, RegistryError
from worker.models.holder import ModelHolder, load_version
from worker.models.registry import Registry
from worker.ops.metrics import WorkerMetrics
from worker.settings import Settings

log = structlog.get_logger(__name__)


class ModelReloader:
    """Owns its control-topic consumer (no group: every worker reads every message)."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        holder: ModelHolder,
        control_consumer: KafkaConsumer,
        metrics: WorkerMetrics,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._holder = holder
        self._consumer = control_consumer
        self._metrics = metrics
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-reloader", daemon=True)
        self._failed_version: str | None = None
        self.last_error: str | None = None
        self.redis_error: str | None = None

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
                self.check_safely(forced=triggered)
                next_check = time.monotonic() + self._settings.active_poll_s

    def check_safely(self, forced: bool) -> None:
        """`check`, but an unexpected error is logged and kept rather than ending the thread:
        a dead reloader would silently stop every later reload."""
        try:
            self.check(forced=forced)
        except Exception as exc:
            self.last_error = f"reload check crashed: {type(exc).__name__}: {exc}"
            self._metrics.reloads.labels("failed").inc()
            log.exception("reload.check_crashed")

    def _poll_control(self, timeout_ms: int) -> bool:
        try:
            batches: dict[Any, list[Any]] = self._consumer.poll(timeout_ms=timeout_ms)
        except KafkaError as exc:
            self._metrics.kafka_errors.labels("control").inc()
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
            self._note_redis_error(exc)
            return
        self._note_redis_ok()
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
            self.last_error = f"{version}: {exc}"
            self._metrics.reloads.labels("failed").inc()
            log.error("model.reload_failed", model_version=version, reason=str(exc))
            return
        except redis.RedisError as exc:
            self._note_redis_error(exc)
            return
        previous = self._holder.current()
        self._holder.swap(model)
        self._metrics.reloads.labels("ok").inc()
        self._metrics.set_model(model.version, model.sha256)
        self._failed_version = None
        self.last_error = None
        log.info(
            "model.loaded",
            model_version=version,
            sha256=model.sha256,
            previous=previous.version if previous else None,
            ms=round((time.monotonic() - started) * 1000, 1),
        )

    def _note_redis_error(self, exc: redis.RedisError) -> None:
        """Keep scoring with the loaded model; log the outage once, count every failure."""
        self._metrics.redis_errors.labels("reload_check").inc()
        if self.redis_error is None:
            log.error(
                "redis.unavailable",
                error=str(exc),
                model_version=getattr(self._holder.current(), "version", None),
            )
        self.redis_error = f"redis unreachable: {exc}"

    def _note_redis_ok(self) -> None:
        self._metrics.note_reload_check()
        if self.redis_error is not None:
            log.info("redis.recovered")
            self.redis_error = None


def _describe(value: bytes | None) -> object:
    try:
        return orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return {"unparsed": (value or b"")[:200].decode("utf-8", "replace")}
