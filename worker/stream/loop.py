"""The consume → score → produce → commit loop, with its rebalance listener.

At-least-once (the default): a batch's offsets are committed only after every prediction and
dead-letter record of it is acknowledged.

One batch is in flight at a time, so waiting on the broker overlaps with work:

    poll N+1 → score N+1 → wait for N's acks → send N+1 → commit N (not waited for) → poll N+2

The producer ships N while N+1 is polled and scored. Batch N+1 is sent only once N has
landed, so a resend of N never overtakes N+1. Commits in the stream are not waited for; a
rebalance (inside poll) and the stop first land the batch in flight, then commit everything
delivered and wait for that commit.

While a batch is retried (the broker refuses or does not acknowledge it), every assigned
partition is paused and polling goes on: the worker keeps its membership however long the
outage lasts. If the group takes partitions away meanwhile, the batch (and the next one, scored
but not sent) is let go uncommitted: its partitions' next owner scores it, and the partitions
this worker keeps are read again from the batch's first offsets.

Exactly-once (`processing_guarantee`): each batch is one Kafka transaction, committed before
the next poll, so nothing is in flight at a rebalance or a stop:

    poll N → score N → begin → send N → N's offsets into the transaction → commit → poll N+1

A transaction that fails is never committed: the consumer reads the batch again from its
first offsets after a backoff, scoring it anew, and the replaced producer aborts the open
transaction (its successor, with the same transactional id, fences it).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from worker.errors import ScorerError, ServiceUnavailable
from worker.infra.retry import backoff_s
from worker.models.holder import Serving
from worker.models.usage import UsageTally
from worker.ops.metrics import WorkerMetrics
from worker.settings import Settings
from worker.stream.events import JSON_EVENTS, EventReader, Limits, Reason, Reject
from worker.stream.scoring import ScoredBatch, score_batch
from worker.stream.transport import (
    Headers,
    Partition,
    ScoringConsumer,
    ScoringProducer,
    TransportError,
    offsets_after,
    offsets_from,
)

log = structlog.get_logger(__name__)


class PartitionTracker:
    """Records assignment changes, and settles the batch in flight before partitions go.

    Both clients swallow or mangle exceptions raised in rebalance callbacks, so this never
    raises: `before_revoke` and `on_lost` must not either."""

    def __init__(
        self,
        before_revoke: Callable[[], None],
        on_lost: Callable[[], None],
        metrics: WorkerMetrics,
    ) -> None:
        self.assigned: set[Partition] = set()
        self.changes = 0  # revocations and losses so far: a retry that sees it move lets go
        self._before_revoke = before_revoke
        self._on_lost = on_lost
        self._metrics = metrics

    def on_partitions_revoked(self, revoked: Sequence[Partition]) -> None:
        self._before_revoke()
        self._taken(revoked, "revoked")
        log.info("partitions.revoked", partitions=_names(revoked))

    def on_partitions_lost(self, lost: Sequence[Partition]) -> None:
        self._on_lost()
        self._taken(lost, "lost")
        log.warning("partitions.lost", partitions=_names(lost))

    def on_partitions_assigned(self, assigned: Sequence[Partition]) -> None:
        self.assigned = self.assigned | set(assigned)
        self._metrics.rebalances.labels("assigned").inc()
        log.info("partitions.assigned", partitions=_names(assigned))

    def _taken(self, partitions: Sequence[Partition], how: str) -> None:
        self.assigned = self.assigned - set(partitions)  # a new set: other threads read it
        if partitions:  # kafka-python revokes nothing before a first assignment
            self.changes += 1
            self._metrics.rebalances.labels(how).inc()


class Landing(enum.Enum):
    """How waiting for a batch's acknowledgements ended."""

    LANDED = "landed"
    STOPPED = "stopped"  # the worker is stopping: the batch stays uncommitted
    LET_GO = "let go"  # partitions moved during the retries: the next owner scores it


@dataclass
class BatchStats:
    """Totals since the last `batch.scored` line: one log line per interval, not per batch."""

    batches: int = 0
    scored: int = 0
    rejected: int = 0
    busy_s: float = 0.0
    versions: set[str] = field(default_factory=set)
    since: float = field(default_factory=time.monotonic)


@dataclass
class OutgoingBatch:
    """A scored batch on its way out: sent, then settled (acknowledged, then committed)."""

    records: Sequence[Any]
    scored: ScoredBatch
    offsets: dict[Partition, int]
    scoring_s: float
    delivery_s: float = 0.0  # sending, waiting for acks (and resending), committing
    send_error: str | None = None


class ScoringLoop:
    """Owns the scoring consumer and the producer from subscribe to close."""

    def __init__(
        self,
        settings: Settings,
        *,
        consumer: ScoringConsumer,
        producer_factory: Callable[[], ScoringProducer],
        serving: Callable[[], Serving],
        stopping: threading.Event,
        metrics: WorkerMetrics,
        usage: UsageTally | None = None,
        reader: EventReader = JSON_EVENTS,
    ) -> None:
        self._settings = settings
        self._reader = reader  # how a record's value becomes an event: JSON, registry records
        self.usage = usage or UsageTally()  # what each version met, for drift and errors
        self._consumer = consumer
        self._producer_factory = producer_factory
        self._producer = producer_factory()
        self._serving = serving
        self._stopping = stopping
        self._metrics = metrics
        self.partitions = PartitionTracker(
            before_revoke=self._settle_before_revoke,
            on_lost=self._forget_in_flight,
            metrics=metrics,
        )
        for reason in Reason.codes():  # every reason's series from the start, at 0
            metrics.dead_letters.labels(reason)
        self._exactly_once = settings.processing_guarantee == "exactly-once"
        self._aborted_in_a_row = 0
        self._paused = False
        self._in_flight: OutgoingBatch | None = None
        self._delivered: dict[Partition, int] = {}  # offsets whose commit was not waited for
        self._stats = BatchStats()
        self.events_scored = 0
        self.dead_lettered = 0
        self.lag: dict[Partition, int] = {}
        self.last_poll_at = time.monotonic()
        self.schema_outage: str | None = None  # why the batch waits for the schema registry

    def run(self) -> None:
        self._consumer.subscribe([self._settings.input_topic], self.partitions)
        try:
            self._consume()
            self._commit_delivered()
        finally:
            self._close()

    def _consume(self) -> None:
        while not self._stopping.is_set():
            records = self._poll()
            waited = self._reader_prepared(records) if records else Landing.LANDED
            if waited is Landing.STOPPED:
                break  # stopped while the registry was out: this batch stays uncommitted
            if waited is Landing.LET_GO:
                continue  # partitions moved while the registry was out: read them again
            outgoing = self._score(records, self._serving()) if records else None
            if not self._advance(outgoing):
                return  # stopped while a batch had not landed: it stays uncommitted
        self._advance(None)  # stopping: land and commit the batch in flight

    def _poll(self) -> Sequence[Any]:
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
        return records

    def _reader_prepared(self, records: Sequence[Any]) -> Landing:
        """The batch's schemas fetched (registry records), waiting out a registry that cannot
        be reached: partitions paused, polls going on, nothing dead-lettered, /readyz not
        ready. The batch in flight lands and is committed before the wait, so that nothing
        before this batch waits with it. LANDED: ready to score; STOPPED: stopped first;
        LET_GO: partitions moved meanwhile, so the batch's partitions that stay here are
        rewound, to be read again."""
        attempt = 0
        changes = self.partitions.changes
        try:
            while True:
                try:
                    self._reader.prepare([r.value for r in records])
                except ServiceUnavailable as exc:
                    self.schema_outage = str(exc)
                    self._metrics.schema_registry_errors.inc()
                    log.warning("schema_registry.unavailable", error=str(exc), attempt=attempt)
                    if not self._advance(None):  # the batch in flight lands first
                        return Landing.STOPPED
                    cap_s = self._settings.delivery_retry_max_s
                    interrupted = self._wait_polling(backoff_s(attempt, cap_s=cap_s))
                    if interrupted is None and self.partitions.changes != changes:
                        interrupted = Landing.LET_GO  # moved while the batch in flight landed
                    if interrupted is Landing.LET_GO:
                        self._consumer.rewind(offsets_from(records))
                    if interrupted is not None:
                        self.schema_outage = None
                        return interrupted
                    attempt += 1
                    continue
                if self.schema_outage is not None:
                    log.info("schema_registry.recovered", attempts=attempt)
                self.schema_outage = None
                return Landing.LANDED
        finally:
            self._resume()

    def _score(self, records: Sequence[Any], serving: Serving) -> OutgoingBatch:
        """Decode, score and encode: each arm of the batch with one version (scoring.py)."""
        started = time.monotonic()
        scored = score_batch(
            [r.value for r in records],
            [r.key for r in records],
            serving,
            Limits(self._settings.max_event_bytes, self._settings.max_category_chars),
            reader=self._reader,
        )
        return OutgoingBatch(
            records, scored, offsets_after(records), scoring_s=time.monotonic() - started
        )

    def _advance(self, outgoing: OutgoingBatch | None) -> bool:
        """Land the batch in flight, send the next one, then commit the landed one (the
        producer ships the next batch while the commit waits). False: stopped first."""
        if self._exactly_once:
            if outgoing is not None:
                self._transact(outgoing)
            return True
        landed, self._in_flight = self._in_flight, None
        if landed is not None:
            landing = self._land(landed)
            if landing is Landing.STOPPED:
                return False
            if landing is Landing.LET_GO:
                self._let_go(landed, outgoing)
                return True
        if outgoing is not None:
            started = time.monotonic()
            outgoing.send_error = self._send_all(outgoing)
            outgoing.delivery_s += time.monotonic() - started
            self._in_flight = outgoing
        if landed is not None:
            self._settle(landed)
        return True

    def _land(self, batch: OutgoingBatch) -> Landing:
        """Wait for every acknowledgement of the batch; after a failure, send it all again
        through a fresh producer, with backoff, polling paused partitions meanwhile, until it
        lands, the worker is stopped, or the group moves partitions.

        At-least-once: a resent batch may land some records twice. Offsets never move past a
        record that was not acknowledged.
        """
        started = time.monotonic()
        try:
            attempt = 0
            failure = batch.send_error or self._flush()
            while failure is not None:
                self._delivery_failed(batch, failure, attempt=attempt)
                interrupted = self._wait_polling(
                    backoff_s(attempt, cap_s=self._settings.delivery_retry_max_s)
                )
                if interrupted is not None:
                    return interrupted
                attempt += 1
                failure = self._send_all(batch) or self._flush()
            return Landing.LANDED
        finally:
            batch.delivery_s += time.monotonic() - started
            self._resume()

    def _wait_polling(self, seconds: float) -> Landing | None:
        """Back off between delivery attempts while staying in the group: every assigned
        partition paused, polls go on (heartbeats, rebalance callbacks), so
        max_poll_interval_ms never runs out however long the broker refuses. None: the wait
        is over and nothing changed; else why it was cut short."""
        deadline = time.monotonic() + seconds
        changes = self.partitions.changes
        while not self._stopping.is_set():
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return None
            self._paused = True
            self._metrics.partitions_paused.set(self._consumer.pause_all())
            try:
                records = self._consumer.poll_batch(
                    min(left_ms, self._settings.poll_timeout_ms), self._settings.batch_max_records
                )
                if records:  # fetched before the pause, or from a partition just assigned
                    self._consumer.rewind(offsets_from(records))
            except TransportError as exc:
                self._metrics.kafka_errors.labels("poll").inc()
                log.warning("poll.failed", error=str(exc))
                self._stopping.wait(min(1.0, max(left_ms, 0) / 1000))
            self.last_poll_at = time.monotonic()
            if self.partitions.changes != changes:
                return Landing.LET_GO
        return Landing.STOPPED

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self._consumer.resume_all()
            self._metrics.partitions_paused.set(0)

    def _let_go(self, batch: OutgoingBatch, following: OutgoingBatch | None) -> None:
        """Partitions moved while the batch was retried: drop it, and the batch scored after
        it, uncommitted. Partitions that stayed are read again from the batch's first offsets
        (this consumer has read past them); the others' next owner reads them from the last
        commit."""
        records = list(batch.records) + list(following.records if following else [])
        log.warning(
            "delivery.let_go_at_rebalance",
            n=len(records),
            partitions=_names(offsets_from(records)),
        )
        try:
            self._consumer.rewind(offsets_from(records))
        except TransportError as exc:
            # Going on would skip these records: stop, leaving them for the next owner.
            raise ScorerError(f"cannot read a dropped batch again: {exc}") from exc

    def _send_all(self, batch: OutgoingBatch) -> str | None:
        """Produce every prediction (same key as its event), every shadow prediction and every
        dead-letter record; an error if the client refused one."""
        records, scored, producer = batch.records, batch.scored, self._producer
        try:
            producer.send_many(
                self._settings.output_topic,
                scored.predictions,
                [records[index].key for index in scored.accepted],
            )
            if scored.shadow_predictions:
                producer.send_many(
                    self._settings.shadow_topic,
                    scored.shadow_predictions,
                    [records[index].key for index in scored.shadow_accepted],
                )
            for reject in scored.rejects:
                record = records[reject.index]
                producer.send(
                    self._settings.dlq_topic,
                    self._dead_letter_value(record),
                    record.key,
                    dead_letter_headers(record, reject),
                )
        except TransportError as exc:
            return f"produce did not complete: {exc}"
        return None

    def _flush(self) -> str | None:
        failures = self._producer.flush(self._settings.delivery_timeout_s)
        if failures:
            return f"{len(failures)} records not acknowledged: {failures[0]}"
        return None

    def _settle(self, batch: OutgoingBatch) -> None:
        """Commit a landed batch, without waiting, and count it."""
        started = time.monotonic()
        self._delivered.update(batch.offsets)
        self._consumer.commit_async(batch.offsets, self._commit_failed)
        batch.delivery_s += time.monotonic() - started
        self._note_delivered(batch)

    def _transact(self, batch: OutgoingBatch) -> None:
        """Exactly-once: the batch's predictions, dead letters and input offsets commit
        together or not at all (see the module docstring for a failure)."""
        started = time.monotonic()
        producer = self._producer
        try:
            producer.begin_transaction()
            failure = self._send_all(batch)
            if failure is None:
                producer.commit_transaction(
                    batch.offsets,
                    self._consumer.group_metadata(),
                    self._settings.delivery_timeout_s,
                )
        except TransportError as exc:
            failure = str(exc)
        batch.delivery_s += time.monotonic() - started
        if failure is None:
            self._aborted_in_a_row = 0
            self._metrics.transactions.labels("committed").inc()
            self._note_delivered(batch)
            return
        self._metrics.transactions.labels("aborted").inc()
        self._delivery_failed(batch, failure, transaction="aborted")
        try:
            self._consumer.rewind(offsets_from(batch.records))
        except TransportError as exc:
            # Going on would skip the batch: stop, leaving it uncommitted for the next owner.
            raise ScorerError(f"cannot read an aborted batch again: {exc}") from exc
        self._wait_polling(
            backoff_s(self._aborted_in_a_row, cap_s=self._settings.delivery_retry_max_s)
        )
        self._resume()
        self._aborted_in_a_row += 1

    def _commit_failed(self, error: str) -> None:
        """A commit that was not waited for failed: the next one, or the one at the next
        rebalance or stop, covers its offsets."""
        self._metrics.kafka_errors.labels("commit").inc()
        log.warning("commit.failed", error=error)

    def _commit_delivered(self) -> None:
        """Commit every delivered offset and wait for it: at a rebalance and at the stop."""
        delivered, self._delivered = self._delivered, {}
        if delivered:
            self._commit(delivered)

    def _settle_before_revoke(self) -> None:
        """Called inside poll when partitions are about to go: land and commit the batch in
        flight now, while this worker still owns its partitions. One attempt only: if it
        fails, the batch is dropped uncommitted and the partitions' next owner scores it
        again (at-least-once); retrying here would hold up the whole group. Whatever happens
        to the batch, the commit of everything delivered is made and waited for."""
        batch, self._in_flight = self._in_flight, None
        try:
            if batch is not None:
                failure = batch.send_error or self._flush()
                if failure is None:
                    self._settle(batch)
                else:
                    self._delivery_failed(batch, failure, at_rebalance=True)
        except Exception as exc:  # a rebalance callback must not raise (see PartitionTracker)
            log.error("rebalance.settle_failed", error=f"{type(exc).__name__}: {exc}")
        try:
            self._commit_delivered()
        except Exception as exc:
            log.error("rebalance.commit_failed", error=f"{type(exc).__name__}: {exc}")

    def _forget_in_flight(self) -> None:
        """The group moved on without this worker: the batch in flight and the commits not
        yet confirmed cannot be committed any more; the partitions' next owner scores them."""
        self._in_flight = None
        self._delivered = {}

    def _delivery_failed(self, batch: OutgoingBatch, failure: str, **context: object) -> None:
        """Count and log it, and start over with a fresh producer."""
        self._metrics.kafka_errors.labels("produce").inc()
        log.error("delivery.failed", error=failure, n=len(batch.records), **context)
        self._replace_producer()

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
            self._consumer.commit(offsets, self._settings.delivery_timeout_s)
        except TransportError as exc:
            self._metrics.kafka_errors.labels("commit").inc()
            # Delivered but not committed: a later commit covers it, or, after a rebalance,
            # the new owner scores these records again (at-least-once).
            log.warning("commit.failed", error=str(exc), partitions=_names(offsets))

    def _note_delivered(self, batch: OutgoingBatch) -> None:
        metrics, scored = self._metrics, batch.scored
        for (version, arm), n in scored.counts.items():
            metrics.predictions.labels(version, arm).inc(n)
        for version, arm, seconds in scored.timings:
            metrics.version_scoring.labels(version, arm).observe(seconds)
        for version, n in scored.shadow_failures.items():
            metrics.shadow_failures.labels(version).inc(n)
        self.usage.add(scored.usage)
        for reject in scored.rejects:
            metrics.dead_letters.labels(reject.reason).inc()
        metrics.observe_latencies(scored.event_ts, time.time())
        metrics.batch_scoring.observe(batch.scoring_s)
        metrics.batch_delivery.observe(batch.delivery_s)
        self.dead_lettered += len(scored.rejects)
        self._note_lag(batch.offsets)
        self._note_batch(batch)

    def _note_lag(self, offsets: dict[Partition, int]) -> None:
        """Lag from the client's cached high watermark after each batch: no broker round trip."""
        for partition, offset in offsets.items():
            highwater = self._consumer.highwater(partition)
            if highwater is not None:
                self.lag[partition] = max(0, highwater - offset)
        assigned = self.partitions.assigned
        self._metrics.set_lag({tp: lag for tp, lag in self.lag.items() if tp in assigned})

    def _note_batch(self, batch: OutgoingBatch) -> None:
        stats = self._stats
        stats.batches += 1
        stats.scored += len(batch.scored.predictions)
        stats.rejected += len(batch.scored.rejects)
        stats.busy_s += batch.scoring_s + batch.delivery_s
        stats.versions |= batch.scored.versions
        self.events_scored += len(batch.scored.predictions)
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
        """Stop order: (batch in flight landed and committed, or left) → leave group → close
        producer."""
        self._log_stats()
        try:
            self._consumer.close()
        finally:
            self._producer.close()
        log.info("loop.closed")


def dead_letter_headers(record: Any, reject: Reject) -> Headers:
    headers: Headers = [
        ("error", reject.reason.encode()),
        ("error_detail", reject.detail.encode("utf-8", "replace")),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
        ("model_version", reject.model_version.encode()),
    ]
    if reject.reason == Reason.TOO_LARGE:
        headers.append(("original_size", str(len(record.value)).encode()))
    return headers


def _names(partitions: Any) -> list[str]:
    return sorted(f"{topic}[{partition}]" for topic, partition in partitions)
