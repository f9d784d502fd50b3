"""The loop's delivery policy with stand-in clients (pure unit tests: the real thing is in
tests/integration/stream/test_survival.py and test_delivery.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
import pytest

from worker.errors import ScorerError, ServiceUnavailable
from worker.models.features import FeatureSchema
from worker.models.holder import LoadedModel, Serving
from worker.ops.metrics import WorkerMetrics
from worker.settings import Settings
from worker.stream.loop import ScoringLoop
from worker.stream.transport import Headers, Partition, RebalanceCallbacks, Record, TransportError

EVENT = orjson.dumps({"event_id": "e-1", "features": {"f0": 1.0}})


class OneBatchConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[Partition, int]] = []  # not waited for
        self.waited: list[dict[Partition, int]] = []  # waited for: at a rebalance and the stop
        self.paused = False
        self.paused_polls = 0

    def subscribe(self, topics: Sequence[str], callbacks: RebalanceCallbacks) -> None:
        pass

    def assignment_size(self) -> int:
        return 1

    def poll_batch(self, timeout_ms: int, max_records: int) -> Sequence[Any]:
        if self.paused:
            return self.poll_paused(timeout_ms)
        return [Record("in", 0, 41, b"k", EVENT)]

    def poll_paused(self, timeout_ms: int) -> Sequence[Any]:
        """A real poll of paused partitions returns nothing after its timeout."""
        self.paused_polls += 1
        time.sleep(timeout_ms / 1000)
        return []

    def pause_all(self) -> int:
        self.paused = True
        return 1

    def resume_all(self) -> None:
        self.paused = False

    def commit(self, next_offsets: dict[Partition, int], timeout_s: float) -> None:
        self.waited.append(next_offsets)

    def commit_async(
        self, next_offsets: dict[Partition, int], on_failure: Callable[[str], None]
    ) -> None:
        self.commits.append(next_offsets)

    def highwater(self, partition: Partition) -> int | None:
        return 42

    def group_metadata(self) -> object:
        return "generation-1"

    def rewind(self, first_offsets: dict[Partition, int]) -> None:
        self.rewound = first_offsets

    def close(self) -> None:
        pass


class RefusingProducer:
    def __init__(self) -> None:
        self.closed = False

    def send(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Headers | None = None
    ) -> None:
        assert not self.closed, "sent through a closed producer"

    def send_many(
        self, topic: str, values: Sequence[bytes | None], keys: Sequence[bytes | None]
    ) -> None:
        for value, key in zip(values, keys, strict=True):
            self.send(topic, value, key)

    def flush(self, timeout_s: float) -> list[str]:
        return ["refused"]

    def begin_transaction(self) -> None:
        assert not self.closed, "a transaction on a closed producer"

    def commit_transaction(
        self, next_offsets: dict[Partition, int], group_metadata: object, timeout_s: float
    ) -> None:
        raise TransportError("records not acknowledged: refused")

    def close(self) -> None:
        self.closed = True


def model() -> LoadedModel:
    return LoadedModel(
        "v1", "sha", FeatureSchema.numbers(("f0",)), "regressor", lambda m: np.zeros(len(m))
    )


def loop_with(
    consumer: OneBatchConsumer,
    factory: Any,
    stopping: threading.Event,
    metrics: WorkerMetrics | None = None,
) -> ScoringLoop:
    return ScoringLoop(
        Settings(delivery_retry_max_s=0.01),
        consumer=consumer,
        producer_factory=factory,
        serving=lambda: Serving(model()),
        stopping=stopping,
        metrics=metrics or WorkerMetrics(),
    )


def test_a_producer_that_cannot_be_rebuilt_is_kept_open_and_nothing_is_committed() -> None:
    """Each retry sends through the kept producer; sending through a closed one would fail."""
    first = RefusingProducer()
    stopping = threading.Event()
    builds: list[int] = []

    def factory() -> RefusingProducer:
        builds.append(1)
        if len(builds) == 1:
            return first
        if len(builds) == 4:
            stopping.set()
        raise ServiceUnavailable("broker away")

    consumer = OneBatchConsumer()
    loop = loop_with(consumer, factory, stopping)
    loop.run()
    assert len(builds) == 4  # three retries, each after a failed rebuild
    assert consumer.commits == [] and consumer.waited == []
    assert loop.events_scored == 0  # an undelivered batch is not counted as scored


def test_a_rebuilt_producer_replaces_the_failed_one_which_is_closed() -> None:
    built: list[RefusingProducer] = []
    stopping = threading.Event()

    def factory() -> RefusingProducer:
        built.append(RefusingProducer())
        if len(built) == 3:
            stopping.set()
        return built[-1]

    consumer = OneBatchConsumer()
    loop_with(consumer, factory, stopping).run()
    assert [p.closed for p in built] == [True, True, True]  # last one closed by the stop
    assert consumer.commits == [] and consumer.waited == []


class AckingProducer(RefusingProducer):
    def flush(self, timeout_s: float) -> list[str]:
        return []


class FlakyConsumer(OneBatchConsumer):
    """The first poll and every commit fail; the loop must count, log and go on."""

    def __init__(self, stopping: threading.Event) -> None:
        super().__init__()
        self._stopping = stopping
        self.polls = 0

    def poll_batch(self, timeout_ms: int, max_records: int) -> Sequence[Any]:
        self.polls += 1
        if self.polls == 1:
            raise TransportError("fetch failed")
        if self.polls == 3:
            self._stopping.set()
        return super().poll_batch(timeout_ms, max_records)

    def commit(self, next_offsets: dict[Partition, int], timeout_s: float) -> None:
        raise TransportError("not the coordinator")

    def commit_async(
        self, next_offsets: dict[Partition, int], on_failure: Callable[[str], None]
    ) -> None:
        on_failure("not the coordinator")


def test_poll_and_commit_failures_are_counted_and_the_loop_goes_on() -> None:
    stopping = threading.Event()
    consumer = FlakyConsumer(stopping)
    metrics = WorkerMetrics()
    loop = loop_with(consumer, AckingProducer, stopping, metrics)
    loop.run()
    registry = metrics.registry
    assert registry.get_sample_value("scorer_kafka_errors_total", {"operation": "poll"}) == 1
    # two batches' commits, then the one waited for at the stop
    assert registry.get_sample_value("scorer_kafka_errors_total", {"operation": "commit"}) == 3
    assert loop.events_scored == 2  # delivered, though not committed: at-least-once


class ScriptedConsumer(OneBatchConsumer):
    """Serves `batches` polls of one record each (offsets 0, 1, ...), then sets `stopping`;
    optionally revokes every partition inside one poll, as a rebalance does."""

    def __init__(
        self, journal: list[str], stopping: threading.Event, batches: int, revoke_at: int = 0
    ) -> None:
        super().__init__()
        self.journal = journal
        self._stopping = stopping
        self._batches = batches
        self._revoke_at = revoke_at
        self._callbacks: RebalanceCallbacks | None = None
        self.polls = 0

    def subscribe(self, topics: Sequence[str], callbacks: RebalanceCallbacks) -> None:
        self._callbacks = callbacks
        callbacks.on_partitions_assigned([("in", 0)])

    def assignment_size(self) -> int:
        return 1

    def poll_batch(self, timeout_ms: int, max_records: int) -> Sequence[Any]:
        if self.paused:
            return self.poll_paused(timeout_ms)
        self.polls += 1
        self.journal.append(f"poll {self.polls}")
        if self.polls == self._revoke_at and self._callbacks is not None:
            self._callbacks.on_partitions_revoked([("in", 0)])
            self._callbacks.on_partitions_assigned([("in", 0)])
        if self.polls == self._batches:
            self._stopping.set()
        return [Record("in", 0, self.polls - 1, b"k", EVENT)]

    def commit(self, next_offsets: dict[Partition, int], timeout_s: float) -> None:
        self.journal.append(f"commit {next_offsets[('in', 0)]}, waited")
        super().commit(next_offsets, timeout_s)

    def commit_async(
        self, next_offsets: dict[Partition, int], on_failure: Callable[[str], None]
    ) -> None:
        self.journal.append(f"commit {next_offsets[('in', 0)]}")
        super().commit_async(next_offsets, on_failure)


class JournalProducer(RefusingProducer):
    """Records sends and flushes; refuses the flushes numbered in `refuse`."""

    def __init__(self, journal: list[str], refuse: Sequence[int] = ()) -> None:
        super().__init__()
        self.journal = journal
        self._refuse = refuse
        self.flushes = 0

    def send(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Headers | None = None
    ) -> None:
        self.journal.append("send")

    def flush(self, timeout_s: float) -> list[str]:
        self.flushes += 1
        self.journal.append("flush")
        return ["refused"] if self.flushes in self._refuse else []


class BrokenAtFirstFlushProducer(JournalProducer):
    """A client that fails in an unexpected way (not a delivery failure) on its first flush."""

    def flush(self, timeout_s: float) -> list[str]:
        if not self.flushes:
            self.flushes += 1
            raise RuntimeError("client bug")
        return super().flush(timeout_s)


def run_scripted(
    batches: int,
    revoke_at: int = 0,
    refuse: Sequence[int] = (),
    producer_type: type[JournalProducer] = JournalProducer,
) -> tuple[list[str], ScriptedConsumer, ScoringLoop]:
    journal: list[str] = []
    stopping = threading.Event()
    consumer = ScriptedConsumer(journal, stopping, batches, revoke_at)
    producer = producer_type(journal, refuse)
    loop = loop_with(consumer, lambda: producer, stopping)
    loop.run()
    return journal, consumer, loop


def test_one_batch_in_flight_acked_after_the_next_poll_committed_after_the_next_send() -> None:
    journal, _, loop = run_scripted(batches=3)
    assert journal == [
        *("poll 1", "send"),
        *("poll 2", "flush", "send", "commit 1"),
        *("poll 3", "flush", "send", "commit 2"),
        *("flush", "commit 3"),  # stopping: the batch in flight lands and is committed,
        "commit 3, waited",  # then everything delivered, waited for
    ]
    assert loop.events_scored == 3


def test_a_rebalance_lands_and_commits_the_batch_in_flight_before_the_partitions_go() -> None:
    journal, consumer, loop = run_scripted(batches=3, revoke_at=2)
    assert journal[:7] == [
        *("poll 1", "send", "poll 2"),
        *("flush", "commit 1", "commit 1, waited"),  # inside poll 2, before the revocation
        "send",
    ]
    assert consumer.commits == [{("in", 0): 1}, {("in", 0): 2}, {("in", 0): 3}]  # once each
    assert consumer.waited == [{("in", 0): 1}, {("in", 0): 3}]
    assert loop.events_scored == 3


def test_a_batch_that_fails_at_a_rebalance_is_left_uncommitted_for_the_next_owner() -> None:
    journal, consumer, loop = run_scripted(batches=3, revoke_at=2, refuse=[1])
    assert journal[:5] == ["poll 1", "send", "poll 2", "flush", "send"]  # no commit 1, no retry
    assert consumer.commits == [{("in", 0): 2}, {("in", 0): 3}]
    assert consumer.waited == [{("in", 0): 3}]
    assert loop.events_scored == 2


def test_a_failed_batch_is_sent_again_before_the_next_batch_is_sent() -> None:
    journal, _, _ = run_scripted(batches=3, refuse=[1])
    assert journal == [
        *("poll 1", "send"),
        *("poll 2", "flush"),  # batch 1 refused
        *("send", "flush"),  # batch 1 again, through a fresh producer
        *("send", "commit 1"),  # only now batch 2
        *("poll 3", "flush", "send", "commit 2"),
        *("flush", "commit 3", "commit 3, waited"),
    ]


def test_stopped_while_the_batch_in_flight_is_refused_nothing_more_is_committed() -> None:
    journal, consumer, loop = run_scripted(batches=2, refuse=[2])
    assert journal[-3:] == ["commit 1", "flush", "commit 1, waited"]  # batch 2 left as is
    assert consumer.commits == [{("in", 0): 1}]
    assert consumer.waited == [{("in", 0): 1}]
    assert loop.events_scored == 1


def test_an_unexpected_error_while_settling_at_a_rebalance_is_contained() -> None:
    """Raised inside the client's rebalance callback it would be swallowed or mangled; the
    loop logs it, leaves that batch uncommitted and goes on."""
    _, consumer, loop = run_scripted(
        batches=3, revoke_at=2, producer_type=BrokenAtFirstFlushProducer
    )
    assert consumer.commits == [{("in", 0): 2}, {("in", 0): 3}]
    assert consumer.waited == [{("in", 0): 3}]
    assert loop.events_scored == 2


class TransactionJournal(JournalProducer):
    """Journals transactions; commits them but the ones numbered in `refuse`."""

    def begin_transaction(self) -> None:
        self.journal.append("begin")

    def commit_transaction(
        self, next_offsets: dict[Partition, int], group_metadata: object, timeout_s: float
    ) -> None:
        self.flushes += 1
        if self.flushes in self._refuse:
            self.journal.append("commit refused")
            raise TransportError("1 records not acknowledged: refused")
        self.journal.append(f"commit {next_offsets[('in', 0)]} with {group_metadata}")


def test_exactly_once_commits_each_batch_with_its_offsets_before_the_next_poll() -> None:
    journal: list[str] = []
    stopping = threading.Event()
    consumer = ScriptedConsumer(journal, stopping, batches=2)
    metrics = WorkerMetrics()
    loop = ScoringLoop(
        Settings(processing_guarantee="exactly-once"),
        consumer=consumer,
        producer_factory=lambda: TransactionJournal(journal),
        serving=lambda: Serving(model()),
        stopping=stopping,
        metrics=metrics,
    )
    loop.run()
    assert journal == [
        "poll 1",
        "begin",
        "send",
        "commit 1 with generation-1",
        "poll 2",
        "begin",
        "send",
        "commit 2 with generation-1",
    ]
    assert consumer.commits == [] and consumer.waited == []  # offsets go in the transactions
    committed = metrics.registry.get_sample_value(
        "scorer_transactions_total", {"result": "committed"}
    )
    assert committed == 2 and loop.events_scored == 2


def test_an_aborted_transaction_rewinds_to_the_batch_and_fences_its_producer() -> None:
    """The failed transaction is never committed; a fresh producer (same transactional id,
    so it aborts the open one) serves the batch read again from its first offset."""
    journal: list[str] = []
    stopping = threading.Event()
    consumer = ScriptedConsumer(journal, stopping, batches=2)
    built: list[TransactionJournal] = []

    def factory() -> TransactionJournal:
        built.append(TransactionJournal(journal, refuse=[1] if not built else []))
        return built[-1]

    metrics = WorkerMetrics()
    loop = ScoringLoop(
        Settings(processing_guarantee="exactly-once", delivery_retry_max_s=0.01),
        consumer=consumer,
        producer_factory=factory,
        serving=lambda: Serving(model()),
        stopping=stopping,
        metrics=metrics,
    )
    loop.run()
    assert journal[:4] == ["poll 1", "begin", "send", "commit refused"]
    assert consumer.rewound == {("in", 0): 0}
    assert journal[4:] == ["poll 2", "begin", "send", "commit 2 with generation-1"]
    assert [p.closed for p in built] == [True, True]
    samples = {
        result: metrics.registry.get_sample_value("scorer_transactions_total", {"result": result})
        for result in ("committed", "aborted")
    }
    assert samples == {"committed": 1, "aborted": 1}
    assert loop.events_scored == 1  # the aborted batch is not counted


class UnrewindableConsumer(ScriptedConsumer):
    def rewind(self, first_offsets: dict[Partition, int]) -> None:
        raise TransportError("seek: erroneous state")


def test_an_aborted_batch_that_cannot_be_read_again_stops_the_worker_uncommitted() -> None:
    """Going on would skip the batch; stopping leaves it to the partitions' next owner."""
    journal: list[str] = []
    stopping = threading.Event()
    consumer = UnrewindableConsumer(journal, stopping, batches=3)
    loop = ScoringLoop(
        Settings(processing_guarantee="exactly-once", delivery_retry_max_s=0.01),
        consumer=consumer,
        producer_factory=lambda: TransactionJournal(journal, refuse=[1]),
        serving=lambda: Serving(model()),
        stopping=stopping,
        metrics=WorkerMetrics(),
    )
    with pytest.raises(ScorerError, match="cannot read an aborted batch again: seek"):
        loop.run()
    assert "poll 2" not in journal and consumer.commits == [] and consumer.waited == []


def test_while_a_batch_is_retried_its_partitions_are_paused_and_polling_goes_on() -> None:
    """Polls during the backoff keep the membership (max_poll_interval_ms); they fetch
    nothing, and the partitions are resumed once the batch lands."""
    journal: list[str] = []
    stopping = threading.Event()
    consumer = ScriptedConsumer(journal, stopping, batches=3)
    metrics = WorkerMetrics()
    producer = JournalProducer(journal, refuse=[1, 2])  # batch 1 refused twice
    loop = ScoringLoop(
        Settings(delivery_retry_max_s=0.3, poll_timeout_ms=50),
        consumer=consumer,
        producer_factory=lambda: producer,
        serving=lambda: Serving(model()),
        stopping=stopping,
        metrics=metrics,
    )
    polled_at: list[float] = []
    original = consumer.poll_paused

    def poll_paused(timeout_ms: int) -> Sequence[Any]:
        polled_at.append(loop.last_poll_at)
        assert metrics.registry.get_sample_value("scorer_partitions_paused") == 1
        return original(timeout_ms)

    consumer.poll_paused = poll_paused  # type: ignore[method-assign]
    loop.run()
    # two backoffs (0.2 s, then 0.3 s) of 50 ms polls
    assert consumer.paused_polls >= 6
    assert polled_at == sorted(polled_at) and len(set(polled_at)) == len(polled_at)
    assert not consumer.paused
    assert metrics.registry.get_sample_value("scorer_partitions_paused") == 0
    assert consumer.commits == [{("in", 0): 1}, {("in", 0): 2}, {("in", 0): 3}]
    assert loop.events_scored == 3


class RevokingWhilePausedConsumer(ScriptedConsumer):
    """The group takes the partition away (and gives it back) during the first paused poll."""

    def poll_paused(self, timeout_ms: int) -> Sequence[Any]:
        if self.paused_polls == 0 and self._callbacks is not None:
            self._callbacks.on_partitions_revoked([("in", 0)])
            self._callbacks.on_partitions_assigned([("in", 0)])
        return super().poll_paused(timeout_ms)


def test_a_rebalance_during_the_retries_lets_the_batch_go_uncommitted_and_reads_it_again() -> None:
    """The retried batch and the one scored after it are dropped, not committed; the
    partition (still this worker's) is read again from the first of them, and scoring goes
    on with no deadlock."""
    journal: list[str] = []
    stopping = threading.Event()
    consumer = RevokingWhilePausedConsumer(journal, stopping, batches=3)
    producer = JournalProducer(journal, refuse=[1])
    loop = loop_with(consumer, lambda: producer, stopping)
    loop.run()
    assert consumer.rewound == {("in", 0): 0}  # batch 1 and batch 2 let go
    assert {("in", 0): 1} not in consumer.commits and {("in", 0): 2} not in consumer.commits
    assert consumer.commits[-1] == {("in", 0): 3} and consumer.waited[-1] == {("in", 0): 3}
    assert loop.events_scored == 1  # only batch 3 delivered (the stand-in does not re-serve)
    assert not consumer.paused


def test_a_lost_partition_forgets_what_cannot_be_committed_any_more() -> None:
    """Evicted from the group: the batch in flight and unconfirmed commits are dropped (its
    next owner scores them), not committed under a generation the group left behind."""
    journal: list[str] = []
    stopping = threading.Event()
    consumer = ScriptedConsumer(journal, stopping, batches=3)
    metrics = WorkerMetrics()
    loop = loop_with(consumer, lambda: JournalProducer(journal), stopping, metrics)
    original = consumer.poll_batch

    def poll_batch(timeout_ms: int, max_records: int) -> Sequence[Any]:
        if consumer.polls == 1:
            loop.partitions.on_partitions_lost([("in", 0)])
        return original(timeout_ms, max_records)

    consumer.poll_batch = poll_batch  # type: ignore[method-assign]
    loop.run()
    assert {("in", 0): 1} not in consumer.commits  # batch 1 was in flight when lost
    assert consumer.waited == [{("in", 0): 3}]
    lost = metrics.registry.get_sample_value("scorer_rebalances_total", {"event": "lost"})
    assert lost == 1
