"""Exactly-once on Apache Kafka: each batch's predictions, dead letters and input offsets in
one transaction, read by downstream consumers with read_committed.

Tansu's read_committed consumers still see aborted transactional records, so none of this
can be shown there: these tests run on Apache Kafka only."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.conftest import (
    TopicReader,
    assert_exactly_once,
    committed,
    create_refusing_topic,
    last_offsets,
    on_tansu,
    steady_stream,
    wait_until,
)
from worker.infra.clients import client_options, ensure_topics
from worker.settings import Settings
from worker.tools.synthetic import event_bytes, feature_rows

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(on_tansu(), reason="Tansu's read_committed shows aborted records"),
]


@pytest.fixture
def eos_settings(client_settings: Settings) -> Settings:
    # a short transaction timeout (the shortest the delivery timeout allows): a killed
    # worker's open transaction is aborted by the broker after it, and only then may its
    # partitions' next owner read their offsets
    return client_settings.replace(
        processing_guarantee="exactly-once",
        transaction_timeout_ms=int(client_settings.delivery_timeout_s * 1000),
    )


@pytest.fixture
def committed_reader(settings: Settings, producer: KafkaProducer) -> Any:
    reader = TopicReader(settings, isolation_level="read_committed").start()
    yield reader
    reader.stop()


def test_a_worker_killed_mid_stream_scores_each_event_exactly_once(
    settings: Settings,
    eos_settings: Settings,
    publish: Any,
    logistic: Any,
    producer: KafkaProducer,
    committed_reader: TopicReader,
    process_factory: Callable[..., Any],
) -> None:
    publish(logistic, "v1")
    victim = process_factory(eos_settings, "run")
    ids, sender = steady_stream(producer, settings.input_topic, 6000)
    wait_until(lambda: len(committed_reader.predictions) > 1000, what="the first worker scoring")
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    sender.join()
    process_factory(eos_settings, "run")
    assert_exactly_once(committed_reader, ids)


def test_scaling_two_to_four_to_two_scores_each_event_exactly_once(
    settings: Settings,
    eos_settings: Settings,
    publish: Any,
    logistic: Any,
    producer: KafkaProducer,
    committed_reader: TopicReader,
    process_factory: Callable[..., Any],
) -> None:
    publish(logistic, "v1")
    first = [process_factory(eos_settings, "run") for _ in range(2)]
    ids, sender = steady_stream(producer, settings.input_topic, 9000, per_s=1000)
    wait_until(lambda: len(committed_reader.predictions) > 1500, what="two workers scoring")
    more = [process_factory(eos_settings, "run") for _ in range(2)]
    wait_until(lambda: len(committed_reader.predictions) > 4500, what="four workers scoring")
    for worker in first:
        worker.send_signal(signal.SIGTERM)
    assert [worker.wait(30) for worker in first] == [0, 0]
    sender.join()
    assert_exactly_once(committed_reader, ids)
    assert all(worker.poll() is None for worker in more)


def test_an_aborted_transaction_leaves_nothing_for_read_committed_readers(
    settings: Settings,
    eos_settings: Settings,
    publish: Any,
    logistic: Any,
    worker_factory: Any,
) -> None:
    """The broker refuses the dead letters; the predictions of the same batch were written,
    but their transaction is aborted, so a read_committed reader sees none of them and the
    batch's offsets stay uncommitted."""
    refused = eos_settings.replace(
        dlq_topic=f"refused-{settings.dlq_topic}", delivery_timeout_s=2.0, delivery_retry_max_s=1.0
    )
    create_refusing_topic(refused, refused.dlq_topic)
    publish(logistic, "v1")
    ensure_topics(refused)
    producer = KafkaProducer(**client_options(refused))
    futures = [
        producer.send(refused.input_topic, key=f"e-{i}".encode(), value=event_bytes(f"e-{i}", row))
        for i, row in enumerate(feature_rows(50, seed=5))
    ] + [producer.send(refused.input_topic, key=f"bad-{i}".encode(), value=b"{") for i in range(5)]
    producer.flush()
    producer.close()
    last = last_offsets(futures)

    everything = TopicReader(refused).start()
    visible = TopicReader(refused, isolation_level="read_committed").start()
    try:
        stuck = worker_factory(refused)
        metrics = stuck.worker.metrics.registry

        def aborted() -> float:
            labels = {"result": "aborted"}
            return metrics.get_sample_value("scorer_transactions_total", labels) or 0

        wait_until(lambda: aborted() >= 2, what="transactions aborted again and again")
        wait_until(lambda: len(everything.predictions) >= 50, what="predictions written")
        assert visible.predictions == [] and visible.dead_letters == []
        assert set(committed(refused, last).values()) == {None}
        assert stuck.thread.is_alive() and stuck.error is None
    finally:
        everything.stop()
        visible.stop()
