"""Health as data with a TTL: each worker's record in Redis, read by `scorer status`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import orjson
import redis
import structlog

from worker.ops.metrics import WorkerMetrics

log = structlog.get_logger(__name__)

TTL_INTERVALS = 3  # a record outlives three missed beats, then the worker counts as gone


def workers_key_prefix(registry_prefix: str) -> str:
    return f"{registry_prefix}:workers:"


class Heartbeat:
    """Writes `snapshot()` every `interval_s`; Redis errors are counted and logged once per
    outage, and never stop the thread."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        interval_s: float,
        snapshot: Callable[[], dict[str, Any]],
        metrics: WorkerMetrics,
    ) -> None:
        self._redis = client
        self.key = key
        self._interval_s = interval_s
        self._snapshot = snapshot
        self._metrics = metrics
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self.failing_since_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Last step of the stop order: the record goes, so status stops listing this worker."""
        self._stopping.set()
        self._thread.join(timeout=self._interval_s + 5)
        try:
            self._redis.delete(self.key)
        except redis.RedisError as exc:
            log.warning("heartbeat.delete_failed", error=str(exc))

    def _run(self) -> None:
        while True:
            self.beat()
            if self._stopping.wait(self._interval_s):
                return

    def beat(self) -> None:
        try:
            self._redis.set(
                self.key,
                orjson.dumps(self._snapshot()),
                ex=max(1, round(self._interval_s * TTL_INTERVALS)),
            )
        except redis.RedisError as exc:
            self._metrics.redis_errors.labels("heartbeat").inc()
            if self.failing_since_error is None:
                log.warning("heartbeat.failed", error=str(exc))
            self.failing_since_error = str(exc)
            return
        if self.failing_since_error is not None:
            log.info("heartbeat.recovered")
            self.failing_since_error = None
