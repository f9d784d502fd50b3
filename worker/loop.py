"""The consume → score → produce → commit loop, with its rebalance listener.

Delivery is at-least-once: a batch's offsets are committed only after every prediction and
dead-letter record of it is acknowledged. Because each batch is committed before the next
poll, a rebalance (which happens inside poll) never finds finished work uncommitted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from worker.errors import DeliveryFailed, ScorerError
from worker.events import DecodedBatch, Reason, Reject, decode_batch, encode_predictions
from worker.metrics import WorkerMetrics
from worker.models import LoadedModel
from worker.retry import backoff_s
from worker.settings import Settings
from worker.transport import (
    Headers,
    Partition,
    ScoringConsumer,
    ScoringProducer,
    TransportError,
)

log = structlog.get_logger(__name__)


class PartitionTracker:
    """Records assignment changes. Both clients swallow or mangle exceptions raised in
    rebalance callbacks, so this only records state; it never raises."""

    def __init__(self) -> None:
        self.assigned: set[Partition] = set()

    def on_partitions_revoked(self, revoked: Sequence[Partition]) -> None:
        self.assigned = self.assigned - set(revoked)  # a new set: other threads read it
        log.info("partitions.revoked", partitions=_names(revoked))

    def on_partitions_assigned(self, assigned: Sequence[Partition]) -> None:
        self.assigned = self.assigned | set(assigned)
        log.info("partitions.assigned", partitions=_names(assigned))


@dataclass
class BatchStats:
    """Totals since the last `batch.scored` line: one log line per interval, not per batch."""

    batches: int = 0
    scored: int = 0
    rejected: int = 0
    busy_s: float = 0.0
    versions: set[str] = field(default_factory=set)
    since: float = field(default_factory=time.monotonic)


class ScoringLoop:
    """Owns the scoring consumer and the producer from subscribe to close."""

    def __init__(
        self,
        settings: Settings,
        *,
        consumer: ScoringConsumer,
        producer_factory: Callable[[], ScoringProducer],
        current_model: Callable[[], LoadedModel],
        stopping: threading.Event,
        metrics: WorkerMetrics,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._producer_factory = producer_factory
        self._producer = producer_factory()
        self._current_model = current_model
        self._stopping = stopping
        self._metrics = metrics
        self.partitions = PartitionTracker()
        self._stats = BatchStats()
        self.events_scored = 0
        self.dead_lettered = 0
        self.lag: dict[Partition, int] = {}
        self.last_poll_at = time.monotonic()

    def run(self) -> None:
        self._consumer.subscribe(self._settings.input_topic, self.partitions)
        try:
            while not self._stopping.is_set():
                records = self._poll()
                if not records:
                    continue
                model = self._current_model()  # one version per batch
                self._score_and_deliver(records, model)
        finally:
            self._close()

    def _poll(self) -> list[Any]:
        try:
            records = self._consumer.poll_batch(
                self._settings.poll_timeout_ms, self._settings.batch_max_records
            )
        except TransportError as exc:
            # kafka-python reconnects by itself; pause so an outage is not a busy loop.
            self._metrics.kafka_errors.labels("poll").inc()
            log.warning("poll.failed", error=str(exc))
            self._stopping.wait(1.0)
            return []
        finally:
            self.last_poll_at = time.monotonic()
        if records:
            self._metrics.events_consumed.inc(len(records))
            self._metrics.batch_events.observe(len(records))
        return list(records)

    def _score_and_deliver(self, records: list[Any], model: LoadedModel) -> None:
        started = time.monotonic()
        batch = decode_batch(
            [r.value for r in records], model.features, self._settings.max_event_bytes
        )
        scores = score_isolating_failures(model, batch)
        predictions = encode_predictions(batch, scores, model.version, time.time())
        scored = time.monotonic()
        offsets = next_offsets(records)
        if not self._deliver_with_retry(records, batch, predictions, model.version, offsets):
            return  # stopped before the batch landed: nothing of it counts as scored
        self._note_delivered(batch, model.version, offsets)
        delivered = time.monotonic()
        self._metrics.batch_scoring.observe(scored - started)
        self._metrics.batch_delivery.observe(delivered - scored)
        self._note_batch(len(predictions), len(batch.rejects), model.version, delivered - started)

    def _deliver_with_retry(
        self,
        records: list[Any],
        batch: DecodedBatch,
        predictions: list[bytes],
        version: str,
        offsets: dict[Partition, int],
    ) -> bool:
        """Retry a failed delivery with backoff until it lands or the worker is stopped.

        The batch stays in hand, so a retry sends it again (at-least-once: some records may land
        twice). Offsets never move past a record that was not acknowledged.
        """
        attempt = 0
        while True:
            try:
                self._deliver(records, batch, predictions, version)
                self._commit(offsets)
                return True
            except DeliveryFailed as exc:
                self._metrics.kafka_errors.labels("produce").inc()
                log.error("delivery.failed", error=str(exc), attempt=attempt, n=len(records))
                self._replace_producer()
                if self._stopping.wait(
                    backoff_s(attempt, cap_s=self._settings.delivery_retry_max_s)
                ):
                    return False  # stopping: leave the batch uncommitted for the next owner
                attempt += 1

    def _deliver(
        self, records: list[Any], batch: DecodedBatch, predictions: list[bytes], version: str
    ) -> None:
        """The delivery protocol, in this order only:

        1. produce every prediction (same key as its event) and every dead-letter record;
        2. flush, then check every acknowledgement: any failure raises DeliveryFailed;
        3. then (the caller) commit, per partition, the offset after the batch's last record.
        """
        try:
            for index, value in zip(batch.accepted, predictions, strict=True):
                self._producer.send(self._settings.output_topic, value, records[index].key)
            for reject in batch.rejects:
                record = records[reject.index]
                self._producer.send(
                    self._settings.dlq_topic,
                    self._dead_letter_value(record),
                    record.key,
                    dead_letter_headers(record, reject, version),
                )
        except TransportError as exc:
            raise DeliveryFailed(f"produce did not complete: {exc}") from None
        failures = self._producer.flush(self._settings.delivery_timeout_s)
        if failures:
            sent = len(batch.accepted) + len(batch.rejects)
            raise DeliveryFailed(
                f"{len(failures)} of {sent} records not acknowledged: {failures[0]}"
            )

    def _replace_producer(self) -> None:
        """A producer that failed may be stuck for good (an idempotent producer whose id the
        broker forgot never recovers); the retry starts from a fresh one. Whatever the old one
        still buffers is dropped: the retry sends the whole batch again. If no new one can be
        built yet (broker away), the old one stays, open, for the next attempt."""
        try:
            fresh = self._producer_factory()
        except ScorerError as exc:
            log.warning("producer.rebuild_failed", error=str(exc))
            return
        stale, self._producer = self._producer, fresh
        try:
            stale.close()
        except Exception as exc:  # a broken client may fail to close in any way
            log.warning("producer.close_failed", error=str(exc))

    def _dead_letter_value(self, record: Any) -> bytes | None:
        """The original bytes; an oversize event is cut to the limit so the broker accepts it."""
        value: bytes | None = record.value
        limit = self._settings.max_event_bytes
        return value[:limit] if value is not None and len(value) > limit else value

    def _commit(self, offsets: dict[Partition, int]) -> None:
        try:
            self._consumer.commit(offsets)
        except TransportError as exc:
            self._metrics.kafka_errors.labels("commit").inc()
            # Delivered but not committed: a later commit covers it, or, after a rebalance,
            # the new owner scores these records again (at-least-once).
            log.warning("commit.failed", error=str(exc), partitions=_names(offsets))

    def _note_delivered(
        self, batch: DecodedBatch, version: str, offsets: dict[Partition, int]
    ) -> None:
        metrics = self._metrics
        metrics.predictions.labels(version).inc(len(batch.accepted))
        for reject in batch.rejects:
            metrics.dead_letters.labels(reject.reason).inc()
        metrics.observe_latencies(batch.event_ts, time.time())
        self.dead_lettered += len(batch.rejects)
        self._note_lag(offsets)

    def _note_lag(self, offsets: dict[Partition, int]) -> None:
        """Lag from the client's cached high watermark after each batch: no broker round trip."""
        for partition, offset in offsets.items():
            highwater = self._consumer.highwater(partition)
            if highwater is not None:
                self.lag[partition] = max(0, highwater - offset)
        assigned = self.partitions.assigned
        self._metrics.set_lag({tp: lag for tp, lag in self.lag.items() if tp in assigned})

    def _note_batch(self, scored: int, rejected: int, version: str, busy_s: float) -> None:
        stats = self._stats
        stats.batches += 1
        stats.scored += scored
        stats.rejected += rejected
        stats.busy_s += busy_s
        stats.versions.add(version)
        self.events_scored += scored
        if time.monotonic() - stats.since >= self._settings.batch_log_interval_s:
            self._log_stats()

    def _log_stats(self) -> None:
        stats = self._stats
        if stats.batches:
            log.info(
                "batch.scored",
                batches=stats.batches,
                scored=stats.scored,
                rejected=stats.rejected,
                model_versions=sorted(stats.versions),
                mean_batch_ms=round(stats.busy_s / stats.batches * 1000, 2),
            )
        self._stats = BatchStats()

    def _close(self) -> None:
        """Stop order: (batch already delivered and committed) → leave group → close producer."""
        self._log_stats()
        try:
            self._consumer.close()
        finally:
            self._producer.close()
        log.info("loop.closed")


def score_isolating_failures(model: LoadedModel, batch: DecodedBatch) -> np.ndarray:
    """Score the batch in one call; if that raises, score row by row and dead-letter the rows
    the model cannot score, so one poisonous row cannot stop the partition."""
    if not batch.accepted:
        return np.empty(0)
    try:
        return model.score(batch.matrix)
    except Exception as exc:
        log.warning(
            "batch.scoring_failed",
            error=f"{type(exc).__name__}: {exc}",
            model_version=model.version,
            n=len(batch.accepted),
        )
    scores: list[float] = []
    keep: list[int] = []
    for row in range(len(batch.accepted)):
        try:
            scores.append(float(model.score(batch.matrix[row : row + 1])[0]))
            keep.append(row)
        except Exception as exc:
            batch.rejects.append(
                Reject(
                    batch.accepted[row],
                    Reason.SCORING_FAILED,
                    f"model {model.version} failed: {type(exc).__name__}: {exc}",
                )
            )
    batch.keep_rows(keep)
    return np.array(scores, dtype=np.float64)


def next_offsets(records: list[Any]) -> dict[Partition, int]:
    """Per partition, the offset after the batch's last record (records are in offset order
    per partition, so the last one wins)."""
    return {(r.topic, r.partition): r.offset + 1 for r in records}


def dead_letter_headers(record: Any, reject: Reject, version: str) -> Headers:
    headers: Headers = [
        ("error", reject.reason.encode()),
        ("error_detail", reject.detail.encode("utf-8", "replace")),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
        ("model_version", version.encode()),
    ]
    if reject.reason == Reason.TOO_LARGE:
        headers.append(("original_size", str(len(record.value)).encode()))
    return headers


def _names(partitions: Any) -> list[str]:
    return sorted(f"{topic}[{partition}]" for topic, partition in partitions)
