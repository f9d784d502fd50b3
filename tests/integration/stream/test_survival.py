"""Outages with real processes: Redis and the broker go away and come back; a worker that
cannot produce never commits what it did not deliver."""

from __future__ import annotations

import resource
import threading
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.conftest import (
    Broker,
    RedisServer,
    TopicReader,
    committed,
    last_offsets,
    on_tansu,
    send_events,
    wait_until,
)
from tests.integration.ops.test_operations import http, metric
from worker.infra.clients import client_options, ensure_topics
from worker.ops.heartbeat import workers_key_prefix
from worker.settings import Settings
from worker.tools.synthetic import event_bytes, feature_rows

pytestmark = pytest.mark.integration


def test_redis_outage_keeps_scoring_with_the_loaded_model_and_recovers(
    settings: Settings,
    publish: Any,
    logistic: Any,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
    redis_server: RedisServer,
    redis_client: Any,
) -> None:
    publish(logistic, "v1")
    worker = worker_factory(settings)
    first = send_events(producer, settings.input_topic, feature_rows(100, seed=1), prefix="a")
    wait_until(lambda: set(first) <= reader.scored_ids(), what="scoring before the outage")

    redis_server.stop()
    try:
        wait_until(
            lambda: worker.worker.reloader.redis_error is not None,
            timeout=settings.active_poll_s + 10,
            what="the outage noticed",
        )
        during = send_events(producer, settings.input_topic, feature_rows(100, seed=2), "b")
        wait_until(lambda: set(during) <= reader.scored_ids(), what="scoring during the outage")
        status, body = http(worker, "/readyz")
        assert status == 200 and b"redis unreachable" in body
        text = http(worker, "/metrics")[1].decode()
        assert metric(text, "scorer_redis_errors_total", operation="reload_check") >= 1
    finally:
        redis_server.start()

    wait_until(
        lambda: worker.worker.reloader.redis_error is None,
        timeout=settings.active_poll_s + 10,
        what="reload checks resumed",
    )
    heartbeat_key = workers_key_prefix(settings.registry_prefix) + worker.worker.worker_id
    wait_until(lambda: redis_client.exists(heartbeat_key), timeout=15, what="heartbeats resumed")
    assert {p["model_version"] for p in reader.predictions} == {"v1"}
    assert worker.thread.is_alive() and worker.error is None


def test_broker_outage_the_worker_neither_exits_nor_spins_and_resumes(
    settings: Settings,
    publish: Any,
    logistic: Any,
    worker_factory: Any,
    broker: Broker,
) -> None:
    publish(logistic, "v1")
    ensure_topics(settings)
    worker = worker_factory(settings)
    before = TopicReader(settings).start()
    producer = KafkaProducer(**client_options(settings))
    try:
        first = send_events(producer, settings.input_topic, feature_rows(100, seed=1), "a")
        wait_until(lambda: set(first) <= before.scored_ids(), what="scoring before the outage")
    finally:
        before.stop()
        producer.close()

    broker.stop()
    cpu_before = worker_cpu_s()
    threading.Event().wait(5)  # the outage lasts a while
    assert worker.thread.is_alive() and worker.error is None
    assert worker_cpu_s() - cpu_before < 3.0, "the worker spun during the outage"
    broker.start()  # same port; Apache Kafka keeps its topics, Tansu keeps nothing

    ensure_topics(settings)
    after = TopicReader(settings).start()
    producer = KafkaProducer(**client_options(settings))
    try:
        later = send_events(producer, settings.input_topic, feature_rows(100, seed=2), "b")
        wait_until(
            lambda: set(later) <= after.scored_ids(),
            timeout=90,
            what="scoring after the broker came back",
        )
    finally:
        after.stop()
        producer.close()


def worker_cpu_s() -> float:
    """CPU seconds of this test process, where the worker thread runs."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_a_refused_batch_is_never_committed_keeps_its_membership_and_is_let_go_at_a_rebalance(
    settings: Settings,
    client_settings: Settings,
    publish: Any,
    logistic: Any,
    worker_factory: Any,
    refusing_output: Settings,
) -> None:
    """The broker refuses every prediction for longer than max_poll_interval_ms: the worker
    pauses its partitions and keeps polling, so it stays in the group, alive, committing
    nothing. A second worker (whose output is accepted) joins meanwhile: the first lets its
    batch go uncommitted, the second scores it, and the first still stops at once."""
    refused = client_settings.replace(
        kafka_bootstrap=refusing_output.kafka_bootstrap,
        output_topic=refusing_output.output_topic,
        delivery_timeout_s=2.0,
        delivery_retry_max_s=1.0,
        max_poll_interval_ms=6000,
    )
    publish(logistic, "v1")
    ensure_topics(refused)
    producer = KafkaProducer(**client_options(refused))
    futures = [
        producer.send(refused.input_topic, key=f"e-{i}".encode(), value=event_bytes(f"e-{i}", row))
        for i, row in enumerate(feature_rows(200, seed=3))
    ]
    producer.flush()
    producer.close()
    last = last_offsets(futures)

    stuck = worker_factory(refused)
    registry = stuck.worker.metrics.registry

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0

    wait_until(
        lambda: sample("scorer_kafka_errors_total", operation="produce") >= 1,
        what="the first delivery refused",
    )
    threading.Event().wait(refused.max_poll_interval_ms / 1000 + 2)  # past the poll interval
    assert stuck.thread.is_alive() and stuck.error is None
    assert sample("scorer_kafka_errors_total", operation="produce") >= 3  # still retrying
    assert sample("scorer_rebalances_total", event="revoked") == 0  # never left the group
    assert sample("scorer_rebalances_total", event="lost") == 0
    assert sample("scorer_partitions_paused") == refused.topic_partitions
    assert http(stuck, "/healthz")[0] == 200
    assert set(committed(refused, last).values()) == {None}

    accepted = refused.replace(output_topic=f"accepted-{settings.output_topic}")
    ensure_topics(accepted)
    reader = TopicReader(accepted).start()
    try:
        if on_tansu():
            # Tansu never completes a join that a member leaves in the middle of (the
            # stuck worker, stopped right after its revocation): there, it goes first
            stuck.stop()
        worker_factory(accepted)
        if not on_tansu():
            wait_until(
                lambda: sample("scorer_rebalances_total", event="revoked") >= 1,
                timeout=60,
                what="a rebalance while the batch is retried",
            )
            stuck.stop()  # within 30 s: no deadlock between the retry and the rebalance
        wait_until(
            lambda: len(reader.scored_ids()) == 200,
            timeout=60,
            what="every event scored by the other worker",
        )
    finally:
        reader.stop()
    wait_until(
        lambda: committed(accepted, last) == {tp: o + 1 for tp, o in last.items()},
        what="offsets committed once delivered",
    )
