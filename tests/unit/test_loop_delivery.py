"""The loop's delivery policy with stand-in clients (pure unit tests: the real thing is in
tests/integration/test_survival.py and test_delivery.py)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from worker.errors import ServiceUnavailable
from worker.loop import ScoringLoop
from worker.metrics import WorkerMetrics
from worker.models import LoadedModel
from worker.settings import Settings
from worker.transport import Headers, Partition, RebalanceCallbacks, Record, TransportError

EVENT = orjson.dumps({"event_id": "e-1", "features": {"f0": 1.0}})


class OneBatchConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[Partition, int]] = []

    def subscribe(self, topic: str, callbacks: RebalanceCallbacks) -> None:
        pass

    def poll_batch(self, timeout_ms: int, max_records: int) -> Sequence[Any]:
        return [Record("in", 0, 41, b"k", EVENT)]

    def commit(self, next_offsets: dict[Partition, int]) -> None:
        self.commits.append(next_offsets)

    def highwater(self, partition: Partition) -> int | None:
        return 42

    def close(self) -> None:
        pass


class RefusingProducer:
    def __init__(self) -> None:
        self.closed = False

    def send(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Headers | None = None
    ) -> None:
        assert not self.closed, "sent through a closed producer"

    def flush(self, timeout_s: float) -> list[str]:
        return ["refused"]

    def close(self) -> None:
        self.closed = True


def model() -> LoadedModel:
    return LoadedModel("v1", "sha", ("f0",), "regressor", lambda m: np.zeros(len(m)))


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
        current_model=model,
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
    assert consumer.commits == []
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
    assert consumer.commits == []


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

    def commit(self, next_offsets: dict[Partition, int]) -> None:
        raise TransportError("not the coordinator")


def test_poll_and_commit_failures_are_counted_and_the_loop_goes_on() -> None:
    stopping = threading.Event()
    consumer = FlakyConsumer(stopping)
    metrics = WorkerMetrics()
    loop = loop_with(consumer, AckingProducer, stopping, metrics)
    loop.run()
    registry = metrics.registry
    assert registry.get_sample_value("scorer_kafka_errors_total", {"operation": "poll"}) == 1
    assert registry.get_sample_value("scorer_kafka_errors_total", {"operation": "commit"}) == 2
    assert loop.events_scored == 2  # delivered, though not committed: at-least-once
