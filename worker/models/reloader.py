"""Live reload, beside the consume loop: control-topic triggers plus a periodic check of the
active key and the route key.

A control message is a trigger, not the truth: on any message, and every `active_poll_s`,
the reloader re-reads both keys in Redis. Every version they name is loaded, verified and
warmed up here, then the whole `Serving` is swapped in at once. If the active version fails to
load, the current primary stays; if a version the route names fails, the route is not applied
(the primary takes every event). Either way the reason is logged, counted and kept for health
reporting.
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
from worker.models.holder import LoadedModel, ModelHolder, Serving, load_version
from worker.models.registry import Registry
from worker.models.route import parse_route
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
        self._route_failures: dict[str, str] = {}  # route versions that failed, and why
        self._models: dict[str, LoadedModel] = {}  # every version serving now, by name
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
        """Re-read the active and route keys; load what they name and swap if it changed.

        `forced` (a control message) retries a version that failed before; the periodic check
        does not, so a broken version is reported once rather than every few seconds.
        """
        try:
            active, raw_route = self._registry.read_keys()
            if active is None:
                self._note_redis_ok(active)
                return
            primary = self._primary(active, forced)
            serving = self._serving(primary, raw_route, forced) if primary else None
        except redis.RedisError as exc:
            self._note_redis_error(exc)
            return
        self._note_redis_ok(active)
        if serving is not None and serving != self._holder.serving():
            self._swap(serving)

    def _primary(self, active: str, forced: bool) -> LoadedModel | None:
        """The active version loaded, or the current primary if it cannot be (yet)."""
        current = self._holder.current()
        if current is not None and current.version == active:
            self._failed_version, self.last_error = None, None
            return current
        if active == self._failed_version and not forced:
            return current
        started = time.monotonic()
        try:
            model = self._fetch(active)
        except (RegistryError, ArtifactRejected) as exc:
            self._failed_version = active
            self.last_error = f"{active}: {exc}"
            self._metrics.reloads.labels("failed").inc()
            log.error("model.reload_failed", model_version=active, reason=str(exc))
            return current
        self._metrics.reloads.labels("ok").inc()
        self._failed_version, self.last_error = None, None
        log.info(
            "model.loaded",
            model_version=active,
            sha256=model.sha256,
            previous=current.version if current else None,
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        return model

    def _serving(
        self, primary: LoadedModel, raw_route: bytes | str | None, forced: bool
    ) -> Serving:
        """The primary with the route's versions, or alone if the route cannot apply here."""
        try:
            route = parse_route(raw_route)
            if primary.version in route.versions:
                raise RegistryError(f"the route names {primary.version}, the active version")
            models = {version: self._route_model(version, forced) for version in route.versions}
        except (RegistryError, ArtifactRejected) as exc:
            return Serving(primary, route_error=str(exc))
        canary = route.canary
        return Serving(
            primary,
            canary=models[canary.version] if canary else None,
            shadows=tuple(models[version] for version in route.shadow),
            route=route,
        )

    def _route_model(self, version: str, forced: bool) -> LoadedModel:
        """A version the route names, loaded; a failure is remembered and, until a control
        message asks again, raised without another attempt."""
        if version in self._route_failures and not forced:
            raise ArtifactRejected(self._route_failures[version])
        try:
            model = self._fetch(version)
        except (RegistryError, ArtifactRejected) as exc:
            self._route_failures[version] = f"{version}: {exc}"
            self._metrics.route_failures.inc()
            log.error("route.version_failed", model_version=version, reason=str(exc))
            raise ArtifactRejected(self._route_failures[version]) from None
        self._route_failures.pop(version, None)
        return model

    def _fetch(self, version: str) -> LoadedModel:
        """From the versions serving now, else the registry (verified and warmed up)."""
        model = self._models.get(version)
        if model is None:
            model = load_version(self._registry, version, self._settings)
            self._models[version] = model
        return model

    def _swap(self, serving: Serving) -> None:
        previous = self._holder.serving()
        self._holder.swap(serving)
        in_use = (serving.primary, serving.canary, *serving.shadows)
        self._models = {model.version: model for model in in_use if model is not None}
        self._metrics.set_serving(
            [(model.version, model.sha256, role) for role, model in serving.roles()],
            serving.canary_percent,
        )
        if previous is None or previous.route != serving.route:
            log.info("route.applied", route=serving.route.as_json() or None)
        if serving.route_error and serving.route_error != getattr(previous, "route_error", None):
            log.error("route.not_applied", reason=serving.route_error)

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

    def _note_redis_ok(self, active: str | None) -> None:
        self._metrics.note_reload_check(active)
        if self.redis_error is not None:
            log.info("redis.recovered")
            self.redis_error = None


def _describe(value: bytes | None) -> object:
    try:
        return orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return {"unparsed": (value or b"")[:200].decode("utf-8", "replace")}
