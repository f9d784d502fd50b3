"""`scorer monitor`: one monitor process's parts, built in start-up order, torn down in stop order.

The join loop: poll a batch of predictions (output and shadow topics) and labels → decode
(malformed records counted and logged) → apply the batch to the join in Redis, while the next
batch is polled → commit its offsets. Nothing is committed before Redis has the batch, and
applying a batch twice changes nothing, so a monitor killed at any point loses no join and
counts no pair twice; a Redis outage rewinds the batch and retries it with backoff.

Beside it, every quality_interval_s: close the join windows that are due (counting drops),
compute the report from the shared windows, publish it as gauges, and let the guardrails act.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import redis
import structlog
from kafka import KafkaProducer

from worker.infra.clients import build_consumer, build_producer, connect_redis, ensure_topics
from worker.infra.retry import backoff_s
from worker.lifecycle.guards import GuardKeeper, current_breaches, decide
from worker.lifecycle.join import JoinStore
from worker.lifecycle.metrics import MonitorMetrics
from worker.lifecycle.records import Joinable, SourceRecord, decode_records
from worker.lifecycle.report import build_report
from worker.models.control import announce
from worker.models.registry import Registry
from worker.models.usage import UsageStore
from worker.ops.health import HealthServer, HealthSources, Readiness
from worker.settings import Settings
from worker.stream.kafka_python import KafkaPythonConsumer
from worker.stream.transport import TransportError, offsets_after, offsets_from

log = structlog.get_logger(__name__)


class Monitor:
    """Start: HTTP → Redis → topics → guard keeper → evaluator thread → join loop.

    Stop (from `stop`, any thread): the loop finishes its batch (in Redis, offsets committed)
    and leaves the group; then the evaluator stops, the announcing producer closes, and HTTP
    stops last.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.monitor_id = f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.metrics = MonitorMetrics()
        self.metrics.ready.set_function(lambda: 1.0 if self.readiness().ready else 0.0)
        self.health: HealthServer | None = None
        self.last_poll_at = time.monotonic()
        self.assigned = 0
        self.redis_error: str | None = None
        self.evaluations = 0  # completed evaluations: a test's condition, a debugger's clue
        self._stopping = threading.Event()
        self._evaluator: threading.Thread | None = None
        self._producer: KafkaProducer | None = None

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        settings = self.settings
        self.health = HealthServer.for_settings(
            settings,
            self.metrics.registry,
            HealthSources(alive=self.alive, readiness=self.readiness),
        )
        self.health.start()
        try:
            client = connect_redis(settings)
            ensure_topics(settings, labels=True)
            store = JoinStore.for_settings(client, settings)
            usage = UsageStore.for_settings(client, settings)
            registry = Registry.for_settings(client, settings)
            keeper = GuardKeeper(
                client,
                registry,
                settings,
                self._announce,
                lambda action: self.metrics.guard_actions.labels(action).inc(),
            )
            self._evaluator = threading.Thread(
                target=self._evaluate_every,
                args=(store, usage, registry, keeper),
                name="quality-evaluator",
                daemon=True,
            )
            self._evaluator.start()
            log.info("monitor.started", monitor_id=self.monitor_id, metrics_port=self.health.port)
            self._join(store)
        finally:
            self._shut_down()

    def _shut_down(self) -> None:
        self._stopping.set()
        if self._evaluator is not None:
            self._evaluator.join(30)
        if self._producer is not None:
            self._producer.close(timeout=5)
        if self.health is not None:
            self.health.stop()
        log.info("monitor.stopped", monitor_id=self.monitor_id)

    # --- the join loop ---

    def _join(self, store: JoinStore) -> None:
        """While Redis applies one batch (on the `join-apply` thread), the next is polled: the
        Redis server's time, a third of a record's cost, is no longer spent waiting. One batch
        is in flight at most; its offsets are committed, here, once Redis has it (without
        waiting for the broker's answer, but for the last batch's), and a batch Redis refused
        is read again together with the one polled meanwhile."""
        settings = self.settings
        # read_committed whatever the workers' guarantee: an exactly-once worker's aborted
        # batch is scored again, and only the committed predictions may be joined
        raw = build_consumer(
            settings, group_id=settings.monitor_group_id, isolation_level="read_committed"
        )
        raw.subscribe([settings.output_topic, settings.shadow_topic, settings.labels_topic])
        consumer = KafkaPythonConsumer(raw)
        applier = ThreadPoolExecutor(1, thread_name_prefix="join-apply")
        in_flight: tuple[list[Any], Future[bool]] | None = None
        failures = 0
        try:
            while not self._stopping.is_set():
                records = self._poll(consumer, raw)
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
                    in_flight = (records, applier.submit(self._apply, store, records))
            if in_flight is not None and in_flight[1].result():
                self._commit(consumer, in_flight[0])
        finally:
            applier.shutdown()
            consumer.close()

    def _poll(self, consumer: KafkaPythonConsumer, raw: Any) -> list[Any]:
        try:
            records = list(
                consumer.poll_batch(self.settings.poll_timeout_ms, self.settings.batch_max_records)
            )
        except TransportError as exc:
            log.warning("monitor.poll_failed", error=str(exc))
            records = []
        self.last_poll_at = time.monotonic()
        self.assigned = len(raw.assignment())
        return records

    def _apply(self, store: JoinStore, records: list[Any]) -> bool:
        """Decode and join one batch; False if Redis did not take it."""
        batch = decode_records(
            (SourceRecord(r.topic, r.partition, r.offset, r.value) for r in records),
            self.settings.labels_topic,
            self.settings.max_event_bytes,
        )
        try:
            joined = store.add(batch.predictions, batch.labels, time.time())
        except redis.RedisError as exc:
            self._redis_failed("monitor.redis_unavailable", exc)
            return False
        self._redis_ok()
        self._count_rejects(batch)  # once the batch is in: a batch read again is not counted twice
        self.metrics.records.labels("prediction").inc(len(batch.predictions))
        self.metrics.records.labels("label").inc(len(batch.labels))
        self.metrics.joined.inc(joined)
        return True

    def _count_rejects(self, batch: Joinable) -> None:
        for reject in batch.rejects:
            log.warning(
                "monitor.record_malformed",
                topic=reject.topic,
                partition=reject.partition,
                offset=reject.offset,
                reason=reject.reason,
                detail=reject.detail,
            )
        for reason, count in Counter(r.reason for r in batch.rejects).items():
            self.metrics.malformed.labels(reason).inc(count)

    def _commit_failed(self, reason: str) -> None:
        """A failed commit is only logged: the batch is then read again, which is harmless."""
        log.warning("monitor.commit_failed", error=reason)

    def _commit(self, consumer: KafkaPythonConsumer, records: list[Any]) -> None:
        """The last batch's, before leaving the group: waited for."""
        try:
            consumer.commit(offsets_after(records), self.settings.delivery_timeout_s)
        except TransportError as exc:
            self._commit_failed(str(exc))

    # --- beside the loop ---

    def _evaluate_every(
        self, store: JoinStore, usage: UsageStore, registry: Registry, keeper: GuardKeeper
    ) -> None:
        while not self._stopping.wait(self.settings.quality_interval_s):
            try:
                self.evaluate(store, usage, registry, keeper)
                self._redis_ok()  # Redis answered: ready again, even with no records flowing
            except redis.RedisError as exc:
                self._redis_failed("monitor.evaluate_failed", exc)
            except Exception:  # a bug must not end the guardrails silently: log, try again
                log.exception("monitor.evaluate_failed")

    def evaluate(
        self, store: JoinStore, usage: UsageStore, registry: Registry, keeper: GuardKeeper
    ) -> None:
        now = time.time()
        swept = store.sweep(now)
        self.metrics.dropped.labels("unlabelled").inc(swept.unlabelled)
        self.metrics.dropped.labels("unmatched_label").inc(swept.unmatched_labels)
        report = build_report(store, usage, registry, self.settings, now)
        self.metrics.quality.update(report, current_breaches(report, self.settings))
        self.metrics.pending.set(report.joins["pending"])
        decisions = decide(report, self.settings, now, keeper.has_previous())
        for decision in decisions:
            keeper.carry_out(decision)
        self.evaluations += 1

    def _announce(self, message: bytes) -> None:
        if self._producer is None:
            self._producer = build_producer(self.settings)
        announce(
            self._producer, self.settings.control_topic, message, self.settings.delivery_timeout_s
        )

    def _redis_failed(self, event: str, exc: Exception) -> None:
        self.metrics.redis_errors.inc()
        if self.redis_error is None:  # one line per outage
            log.error(event, error=f"{type(exc).__name__}: {exc}")
        self.redis_error = f"{type(exc).__name__}: {exc}"

    def _redis_ok(self) -> None:
        if self.redis_error is not None:
            log.info("monitor.redis_recovered")
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
