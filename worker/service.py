"""One worker process's parts, built and wired in start-up order, torn down in stop order."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import structlog

from worker.infra.clients import build_consumer, connect_redis, ensure_topics
from worker.models.holder import LoadedModel, ModelHolder, Serving
from worker.models.registry import Registry
from worker.models.reloader import ModelReloader
from worker.models.usage import UsageFlusher, UsageStore, UsageTally
from worker.ops.health import HealthServer, HealthSources, Readiness
from worker.ops.heartbeat import Heartbeat, workers_key_prefix
from worker.ops.metrics import WorkerMetrics
from worker.settings import Settings
from worker.stream.events import Limits
from worker.stream.factory import scoring_consumer, scoring_producer
from worker.stream.heap import settle_heap
from worker.stream.loop import ScoringLoop
from worker.stream.predict import predict_body
from worker.stream.records import event_reader

log = structlog.get_logger(__name__)

_WAITING_LOG_INTERVAL_S = 10.0


class Worker:
    """Start: HTTP → Redis → topics → reloader (loads the active version) → heartbeat → wait
    for a model → consume.

    Stop (from `stop`, any thread): the loop finishes and commits its batch, leaves the group
    and closes the producer; then the reloader stops, the usage flusher flushes a last time,
    HTTP stops, and last the heartbeat record is deleted.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        # exactly-once: one id per process, kept by every producer it builds, so a replacement
        # fences (and aborts the transaction of) the one it replaces
        self.transactional_id = (
            (settings.transactional_id or f"{settings.group_id}-{self.worker_id}")
            if settings.processing_guarantee == "exactly-once"
            else None
        )
        self.started_at = time.time()
        self.holder = ModelHolder()
        self.metrics = WorkerMetrics()
        self.metrics.ready.set_function(lambda: 1.0 if self.readiness().ready else 0.0)
        self.loop: ScoringLoop | None = None
        self.reloader: ModelReloader | None = None
        self.heartbeat: Heartbeat | None = None
        self.health: HealthServer | None = None
        self.usage = UsageTally()
        self.usage_flusher: UsageFlusher | None = None
        self._stopping = threading.Event()
        self._waiting_beat = time.monotonic()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        settings = self.settings
        self.health = HealthServer.for_settings(
            settings, self.metrics.registry, self._health_sources()
        )
        self.health.start()
        try:
            redis_client = connect_redis(settings)
            ensure_topics(settings)
            registry = Registry.for_settings(redis_client, settings)
            self.reloader = ModelReloader(
                settings,
                registry,
                self.holder,
                build_consumer(settings, group_id=None),
                self.metrics,
            )
            self.reloader.start()
            self.heartbeat = Heartbeat(
                redis_client,
                workers_key_prefix(settings.registry_prefix) + self.worker_id,
                settings.worker_heartbeat_s,
                self.snapshot,
                self.metrics,
            )
            self.heartbeat.start()
            self.usage_flusher = UsageFlusher(
                self.usage,
                UsageStore.for_settings(redis_client, settings),
                settings.worker_heartbeat_s,
            )
            self.usage_flusher.start()
            log.info(
                "worker.started",
                worker_id=self.worker_id,
                metrics_port=self.health.port,
                settings=settings.redacted(),
            )
            self._consume()
        finally:
            self._shut_down()

    def _consume(self) -> None:
        if self._wait_for_model() is None:
            return
        settle_heap()  # imports and the first model are loaded: keep them out of collections
        self.loop = ScoringLoop(
            self.settings,
            consumer=scoring_consumer(self.settings),
            producer_factory=lambda: scoring_producer(self.settings, self.transactional_id),
            serving=self._serving,
            stopping=self._stopping,
            metrics=self.metrics,
            usage=self.usage,
            reader=event_reader(self.settings.input_format, self.settings.schema_registry_url),
        )
        self.loop.run()

    def _shut_down(self) -> None:
        started = self.heartbeat is not None
        for part in (self.reloader, self.usage_flusher, self.health, self.heartbeat):
            if part is not None:
                part.stop()
        if started:  # a start-up failure is reported by the CLI in one line, nothing more
            log.info("worker.stopped", worker_id=self.worker_id)

    def _wait_for_model(self) -> LoadedModel | None:
        """Not ready and not consuming until a version is active and loaded."""
        next_log = time.monotonic()
        while not self._stopping.is_set():
            self._waiting_beat = time.monotonic()
            model = self.holder.wait_loaded(0.25)
            if model is not None:
                return model
            if time.monotonic() >= next_log:
                log.warning(
                    "worker.waiting_for_model",
                    active_key=self.settings.active_key,
                    last_error=self.reloader.last_error if self.reloader else None,
                )
                next_log = time.monotonic() + _WAITING_LOG_INTERVAL_S
        return None

    def _serving(self) -> Serving:
        serving = self.holder.serving()
        assert serving is not None, "the loop starts only after a model is loaded"
        return serving

    def _health_sources(self) -> HealthSources:
        limits = Limits(self.settings.max_event_bytes, self.settings.max_category_chars)
        return HealthSources(
            alive=self.alive,
            readiness=self.readiness,
            predict=lambda body: predict_body(body, self.holder.serving(), limits),
        )

    def alive(self) -> bool:
        """The loop (or the wait for a first model) turned within the max-poll interval."""
        last = self.loop.last_poll_at if self.loop else self._waiting_beat
        return time.monotonic() - last < self.settings.max_poll_interval_ms / 1000

    def readiness(self) -> Readiness:
        degraded = self.reloader.redis_error if self.reloader else None
        if self.holder.current() is None:
            error = self.reloader.last_error if self.reloader else None
            reason = f"model not loaded: {error}" if error else "waiting for an active version"
            return Readiness(False, reason, degraded)
        if self.loop is None or not self.loop.partitions.assigned:
            return Readiness(
                False, "not in the consumer group yet (no partitions assigned)", degraded
            )
        if self.loop.schema_outage is not None:
            return Readiness(False, f"waiting for the schema registry: {self.loop.schema_outage}")
        return Readiness(True, "ok", degraded)

    def snapshot(self) -> dict[str, Any]:
        """The heartbeat record that `scorer status` shows."""
        serving = self.holder.serving()
        model = serving.primary if serving else None
        loop = self.loop
        readiness = self.readiness()
        return {
            "worker_id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "model_version": model.version if model else None,
            "sha256": model.sha256 if model else None,
            "route": serving.route.as_json() if serving else {},
            "route_error": serving.route_error if serving else None,
            "partitions": sorted(f"{topic}[{part}]" for topic, part in loop.partitions.assigned)
            if loop
            else [],
            "events_scored": loop.events_scored if loop else 0,
            "dead_lettered": loop.dead_lettered if loop else 0,
            "ready": readiness.ready,
            "reason": readiness.reason,
            "degraded": readiness.degraded,
            "last_error": self.reloader.last_error if self.reloader else None,
            "started_at": self.started_at,
            "updated_at": time.time(),
        }
