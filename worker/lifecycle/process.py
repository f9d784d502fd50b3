"""What `scorer monitor` and `scorer retrain` share: a join loop in the process's own consumer
group, work beside it on a thread, health, readiness and /metrics, and Redis outages.

The join loop: poll a batch → decode and apply it to the join in Redis (on the `join-apply`
thread), while the next batch is polled → commit its offsets. Nothing is committed before Redis
has the batch, and applying a batch twice changes nothing, so a process killed at any point
loses no join and counts nothing twice; a Redis outage rewinds the batch and retries it with
backoff. The work beside the loop (the monitor's evaluation, the retrainer's fitting) runs every
`interval_s` on its own thread, so however long it takes, polling goes on and the group keeps
the process.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar

import redis
import structlog
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry, Counter, Gauge

from worker.infra.clients import build_producer, connect_redis, ensure_topics
from worker.infra.retry import backoff_s
from worker.lifecycle.records import Rejected
from worker.models.control import announce
from worker.ops.health import HealthServer, HealthSources, Readiness
from worker.settings import Settings
from worker.stream.factory import joining_consumer
from worker.stream.transport import ScoringConsumer, TransportError, offsets_after, offsets_from

log = structlog.get_logger(__name__)

Apply = Callable[[list[Any]], bool]  # one polled batch into Redis; False if Redis refused it


class JoinProcess(ABC):
    """Start: HTTP → Redis → topics → `prepare` → the work beside → join loop.

    Stop (from `stop`, any thread): the loop finishes its batch (in Redis, offsets committed)
    and leaves the group; then the work beside stops, the announcing producer closes, and HTTP
    stops last.
    """

    kind: ClassVar[str]  # monitor | retrain: names its log events

    def __init__(
        self, settings: Settings, registry: CollectorRegistry, ready: Gauge, redis_errors: Counter
    ) -> None:
        self.settings = settings
        self.process_id = f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self._metrics_registry = registry
        self._redis_errors = redis_errors
        ready.set_function(lambda: 1.0 if self.readiness().ready else 0.0)
        self.health: HealthServer | None = None
        self.last_poll_at = time.monotonic()
        self.assigned = 0
        self.redis_error: str | None = None
        self._stopping = threading.Event()
        self._beside: threading.Thread | None = None
        self._producer: KafkaProducer | None = None

    @property
    @abstractmethod
    def group_id(self) -> str: ...

    @property
    @abstractmethod
    def topics(self) -> list[str]: ...

    @property
    @abstractmethod
    def interval_s(self) -> float:
        """How often the work beside the loop runs."""

    @abstractmethod
    def prepare(self, client: redis.Redis) -> tuple[Apply, Callable[[], None]]:
        """Build the process's parts on this Redis client: what applies a polled batch, and
        the work beside the loop."""

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        settings = self.settings
        self.health = HealthServer.for_settings(
            settings,
            self._metrics_registry,
            HealthSources(alive=self.alive, readiness=self.readiness),
        )
        self.health.start()
        try:
            client = connect_redis(settings)
            ensure_topics(settings, labels=True)
            apply, beside = self.prepare(client)
            self._beside = threading.Thread(
                target=self._every, args=(beside,), name=f"{self.kind}-beside", daemon=True
            )
            self._beside.start()
            log.info(f"{self.kind}.started", process_id=self.process_id, port=self.health.port)
            self._join(apply)
        finally:
            self._shut_down()

    def _shut_down(self) -> None:
        self._stopping.set()
        if self._beside is not None:
            self._beside.join(30)
        if self._producer is not None:
            self._producer.close(timeout=5)
        if self.health is not None:
            self.health.stop()
        log.info(f"{self.kind}.stopped", process_id=self.process_id)

    # --- the join loop ---

    def _join(self, apply: Apply) -> None:
        """While Redis applies one batch (on the `join-apply` thread), the next is polled: the
        Redis server's time, a third of a record's cost, is no longer spent waiting. One batch
        is in flight at most; its offsets are committed, here, once Redis has it (without
        waiting for the broker's answer, but for the last batch's), and a batch Redis refused
        is read again together with the one polled meanwhile."""
        consumer = joining_consumer(self.settings, self.group_id, self.topics)
        applier = ThreadPoolExecutor(1, thread_name_prefix="join-apply")
        in_flight: tuple[list[Any], Future[bool]] | None = None
        failures = 0
        try:
            while not self._stopping.is_set():
                records = self._poll(consumer)
                if in_flight is not None:
                    applied, done = in_flight
                    in_flight = None
                    if done.result():
                        failures = 0
                        consumer.commit_async(offsets_after(applied), self._commit_failed)
                    else:  # Redis is away: read both batches again once it is back
                        consumer.rewind(offsets_from([*applied, *records]))
                        self._stopping.wait(backoff_s(failures))
                        failures += 1
                        continue
                if records:
                    in_flight = (records, applier.submit(apply, records))
            if in_flight is not None and in_flight[1].result():
                self._commit(consumer, in_flight[0])
        finally:
            applier.shutdown()
            consumer.close()

    def _poll(self, consumer: ScoringConsumer) -> list[Any]:
        try:
            records = list(
                consumer.poll_batch(self.settings.poll_timeout_ms, self.settings.batch_max_records)
            )
        except TransportError as exc:
            log.warning(f"{self.kind}.poll_failed", error=str(exc))
            records = []
        self.last_poll_at = time.monotonic()
        self.assigned = consumer.assignment_size()
        return records

    def _commit_failed(self, reason: str) -> None:
        """A failed commit is only logged: the batch is then read again, which is harmless."""
        log.warning(f"{self.kind}.commit_failed", error=reason)

    def _commit(self, consumer: ScoringConsumer, records: list[Any]) -> None:
        """The last batch's, before leaving the group: waited for."""
        try:
            consumer.commit(offsets_after(records), self.settings.delivery_timeout_s)
        except TransportError as exc:
            self._commit_failed(str(exc))

    def count_rejects(self, rejects: Sequence[Rejected], counter: Counter) -> None:
        """Log each record that could not be joined, and count it by reason."""
        for reject in rejects:
            log.warning(
                f"{self.kind}.record_malformed",
                topic=reject.topic,
                partition=reject.partition,
                offset=reject.offset,
                reason=reject.reason,
                detail=reject.detail,
            )
        for reason, count in Tally(r.reason for r in rejects).items():
            counter.labels(reason).inc(count)

    # --- beside the loop ---

    def _every(self, work: Callable[[], None]) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                work()
                self.redis_ok()  # Redis answered: ready again, even with no records flowing
            except redis.RedisError as exc:
                self.redis_failed(f"{self.kind}.beside_failed", exc)
            except Exception:  # a bug must not end the work beside silently: log, try again
                log.exception(f"{self.kind}.beside_failed")

    def announce(self, message: bytes) -> None:
        """On the control topic, from one producer made at first use."""
        if self._producer is None:
            self._producer = build_producer(self.settings)
        announce(
            self._producer, self.settings.control_topic, message, self.settings.delivery_timeout_s
        )

    def redis_failed(self, event: str, exc: Exception) -> None:
        self._redis_errors.inc()
        if self.redis_error is None:  # one line per outage
            log.error(event, error=f"{type(exc).__name__}: {exc}")
        self.redis_error = f"{type(exc).__name__}: {exc}"

    def redis_ok(self) -> None:
        if self.redis_error is not None:
            log.info(f"{self.kind}.redis_recovered")
        self.redis_error = None

    # --- health ---

    def alive(self) -> bool:
        return time.monotonic() - self.last_poll_at < self.settings.max_poll_interval_ms / 1000

    def readiness(self) -> Readiness:
        if self.redis_error is not None:
            return Readiness(False, f"Redis unavailable: {self.redis_error}")
        if self.assigned == 0:
            return Readiness(False, "not in the consumer group yet (no partitions assigned)")
        return Readiness(True, "ok")
