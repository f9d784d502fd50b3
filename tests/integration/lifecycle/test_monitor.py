"""`scorer monitor` on the real broker and Redis: labels joined to a real worker's predictions,
figures equal to scikit-learn's on the same pairs, a broken canary aborted by the guardrails,
a fresh primary rolled back once by two monitors, nothing done below guard_min_labels, a
SIGKILLed monitor that loses no join, a Redis outage that loses none either, and malformed
labels counted."""

from __future__ import annotations

import signal
import threading
import urllib.request
from typing import Any

import numpy as np
import orjson
import pytest
from kafka import KafkaProducer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, recall_score, roc_auc_score

from tests.conftest import RedisServer, TopicReader, run_scorer, wait_until
from tests.integration.lifecycle.conftest import (
    guard_changes,
    send_labels,
    send_predictions,
    store_of,
)
from worker.infra.clients import connect_redis
from worker.models.registry import Registry
from worker.settings import Settings
from worker.tools.synthetic import click_labels, event_bytes, feature_rows

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("labels_topic")]

GUARDED = {"guard_min_labels": 200, "guard_min_auc": 0.6, "quality_interval_s": 0.5}


def test_broken_canary_is_aborted_and_the_figures_equal_scikit_learns(
    settings: Settings,
    publish: Any,
    logistic: Any,
    registry: Registry,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
    monitor_factory: Any,
) -> None:
    """A real worker scores v1 and a 20 % canary trained on shuffled labels; clicks drawn from
    the known truth arrive after the predictions. The monitor joins them, the canary's AUC
    falls below guard_min_auc and it is aborted once, recorded with its figures; `scorer
    quality --json` then gives v1's AUC, log loss and recall as scikit-learn does on the pairs
    read back from the output topic."""
    settings = settings.replace(**GUARDED)
    rows = feature_rows(4000, seed=11)
    truth = click_labels(rows, seed=11)
    shuffled = LogisticRegression(max_iter=500).fit(
        rows, np.random.default_rng(0).permutation(truth)
    )
    publish(logistic, "v1")
    publish(shuffled, "v3", activate=False)
    registry.set_canary("v3", 20, by="test")
    worker_factory(settings)
    monitor = monitor_factory(settings)
    ids = [f"e-{i}" for i in range(len(rows))]
    for event_id, row in zip(ids, rows, strict=True):
        producer.send(settings.input_topic, key=event_id.encode(), value=event_bytes(event_id, row))
    producer.flush()
    wait_until(lambda: reader.scored_ids() == set(ids), timeout=60, what="every event scored")
    send_labels(producer, settings.labels_topic, dict(zip(ids, truth.tolist(), strict=True)))

    wait_until(lambda: registry.route().empty, timeout=60, what="the canary aborted")
    aborts = guard_changes(registry, "abort")
    assert len(aborts) == 1 and "guard_min_auc" in aborts[0]["reason"]
    assert aborts[0]["aborted"]["canary"]["version"] == "v3"
    assert aborts[0]["figures"]["labelled"] >= 200 and aborts[0]["figures"]["auc"] < 0.6

    pairs = {(p["event_id"], p["model_version"], p["arm"]): p["score"] for p in reader.predictions}
    store = store_of(settings)
    wait_until(lambda: store.stats().get("joined") == len(pairs), what="every prediction joined")
    wait_until(monitor.evaluated_again(), what="an evaluation after the last join")
    report = orjson.loads(run_scorer(settings, "quality", "--json").stdout)
    label_of = dict(zip(ids, truth.tolist(), strict=True))
    primary = [(score, label_of[e]) for (e, v, arm), score in pairs.items() if v == "v1"]
    scores, labels = np.array(primary).T
    figures = report["versions"]["v1"]["arms"]["primary"]
    assert figures["labelled"] == len(primary)
    assert figures["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
    assert figures["logloss"] == pytest.approx(log_loss(labels, scores, labels=[0, 1]), abs=1e-9)
    assert figures["recall"] == pytest.approx(recall_score(labels, scores >= 0.5), abs=1e-9)
    assert figures["auc_low"] < figures["auc"] < figures["auc_high"]
    assert report["versions"]["v3"]["arms"]["canary"]["auc"] < 0.6
    assert monitor.monitor.metrics.guard_actions.labels("abort")._value.get() == 1
    assert monitor.monitor.health is not None
    url = f"http://127.0.0.1:{monitor.monitor.health.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        exported = response.read().decode()
    auc = f'scorer_quality_auc{{arm="primary",model_version="v1"}} {figures["auc"]!r}'
    assert auc in exported and 'scorer_guard_actions_total{action="abort"} 1.0' in exported


def test_two_monitors_roll_a_failing_fresh_primary_back_once(
    settings: Settings,
    publish: Any,
    logistic: Any,
    registry: Registry,
    producer: KafkaProducer,
    monitor_factory: Any,
) -> None:
    """v2 activated after v1 scores at random; two monitors share the join, and exactly one
    of them rolls v2 back to v1 once enough labels are in, never before."""
    settings = settings.replace(**GUARDED, guard_rollback_window_s=600)
    publish(logistic, "v1")
    publish(logistic, "v2")
    monitors = [monitor_factory(settings), monitor_factory(settings)]
    rng = np.random.default_rng(5)
    labels = {f"e-{i}": int(rng.random() < 0.3) for i in range(400)}
    scores = {event_id: float(rng.random()) for event_id in labels}
    first = dict(list(labels.items())[:150])
    send_labels(producer, settings.labels_topic, first)
    send_predictions(producer, settings.output_topic, "v2", "primary", scores)
    store = store_of(settings)
    wait_until(lambda: store.stats().get("joined") == 150, what="the first 150 joined")
    wait_until(monitors[0].evaluated_again(), what="an evaluation below guard_min_labels")
    assert registry.active_version() == "v2" and guard_changes(registry, "rollback") == []

    send_labels(producer, settings.labels_topic, labels)
    wait_until(lambda: registry.active_version() == "v1", what="v2 rolled back")
    wait_until(monitors[1].evaluated_again(), what="both monitors judged again")
    wait_until(monitors[0].evaluated_again(), what="both monitors judged again")
    rollbacks = guard_changes(registry, "rollback")
    assert len(rollbacks) == 1 and rollbacks[0]["version"] == "v1"
    assert "guard_min_auc" in rollbacks[0]["reason"]
    taken = [m.monitor.metrics.guard_actions.labels("rollback")._value.get() for m in monitors]
    assert sorted(taken) == [0, 1]
    assert connect_redis(settings).sismember(f"{settings.registry_prefix}:guard:blocked", "v2")


def _canary_against_primary(
    producer: KafkaProducer, settings: Settings, labels: dict[str, int], canary: str
) -> None:
    """v1 scores half the events at random, the canary the other half from their clicks."""
    rng = np.random.default_rng(8)
    ids = list(labels)
    good = {e: float(1 / (1 + np.exp(-(3 * labels[e] - 1.5 + rng.normal())))) for e in ids[1::2]}
    send_predictions(producer, settings.output_topic, canary, "canary", good)
    random = {e: float(rng.random()) for e in ids[::2]}
    send_predictions(producer, settings.output_topic, "v1", "primary", random)


@pytest.mark.parametrize(("author", "promoted"), [("scorer-retrain", True), ("alice@host", False)])
def test_two_monitors_promote_a_better_automatic_canary_once_past_the_labels_it_needs(
    author: str,
    promoted: bool,
    settings: Settings,
    publish: Any,
    logistic: Any,
    registry: Registry,
    producer: KafkaProducer,
    monitor_factory: Any,
) -> None:
    """A retrainer's canary whose AUC beats the primary's is promoted by one of two monitors,
    recorded with its figures, once it has guard_promote_min_labels labelled predictions and
    not before; a person's canary with the same figures stays theirs to promote."""
    settings = settings.replace(**GUARDED, guard_promote_min_labels=300)
    publish(logistic, "v1")
    publish(logistic, "v2", activate=False)
    registry.set_canary("v2", 50, by=author)
    monitors = [monitor_factory(settings), monitor_factory(settings)]
    rng = np.random.default_rng(9)
    labels = {f"e-{i}": int(rng.random() < 0.3) for i in range(1000)}
    _canary_against_primary(producer, settings, labels, "v2")
    first = dict(list(labels.items())[:400])  # about 200 for the canary: below the guard
    send_labels(producer, settings.labels_topic, first)
    store = store_of(settings)
    wait_until(lambda: store.stats().get("joined") == 400, what="the first 400 joined")
    wait_until(monitors[0].evaluated_again(), what="an evaluation below the guard")
    assert registry.active_version() == "v1"

    send_labels(producer, settings.labels_topic, labels)
    wait_until(lambda: store.stats().get("joined") == 1000, what="every label joined")
    for monitor in monitors:
        wait_until(monitor.evaluated_again(), what="both monitors judged again")
    if not promoted:
        assert registry.active_version() == "v1" and registry.route().canary is not None
        assert guard_changes(registry, "promote") == []
        return
    assert registry.active_version() == "v2" and registry.route().empty
    (promotion,) = guard_changes(registry, "promote")
    assert promotion["version"] == "v2" and "guard_promote_min_labels 300" in promotion["reason"]
    assert promotion["figures"]["comparison"]["verdict"] == "better"
    assert promotion["figures"]["labelled"] >= 300
    taken = [m.monitor.metrics.guard_actions.labels("promote")._value.get() for m in monitors]
    assert sorted(taken) == [0, 1]


def test_a_monitor_killed_mid_stream_loses_no_join(
    client_settings: Settings, producer: KafkaProducer, process_factory: Any
) -> None:
    """SIGKILL while labels and predictions stream in; a new monitor process picks up from
    the committed offsets and every pair is joined exactly once (with each Kafka client)."""
    settings = client_settings
    count = 6000
    labels = {f"e-{i}": i % 2 for i in range(count)}
    scores = {event_id: (i % 97) / 97 for i, event_id in enumerate(labels)}
    store = store_of(settings)
    first = process_factory(settings, "monitor")

    def stream() -> None:
        for start in range(0, count, 500):
            chunk = list(labels)[start : start + 500]
            send_predictions(
                producer, settings.output_topic, "v1", "primary", {e: scores[e] for e in chunk}
            )
            send_labels(producer, settings.labels_topic, {e: labels[e] for e in chunk})
            threading.Event().wait(0.2)

    sender = threading.Thread(target=stream)
    sender.start()
    wait_until(lambda: store.stats().get("joined", 0) > 500, timeout=60, what="joins under way")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_at = store.stats().get("joined", 0)
    sender.join()
    process_factory(settings, "monitor")
    wait_until(lambda: store.stats().get("joined") == count, timeout=60, what="every pair joined")
    window = store.window("v1", "primary")
    assert killed_at < count, "the kill came after the stream: it proved nothing"
    assert len(window.event_ids) == len(set(window.event_ids)) == count
    assert dict(zip(window.event_ids, window.scores.tolist(), strict=True)) == scores


def test_malformed_labels_are_counted_and_the_monitor_goes_on(
    client_settings: Settings, producer: KafkaProducer, monitor_factory: Any
) -> None:
    settings = client_settings  # each Kafka client in turn
    running = monitor_factory(settings)
    bad = [b"{not json", b'{"label": 1}', b'{"event_id": "e-1", "label": "yes"}', b"[1]"]
    for value in bad:
        producer.send(settings.labels_topic, value)
    send_predictions(producer, settings.output_topic, "v1", "primary", {"e-1": 0.9})
    send_labels(producer, settings.labels_topic, {"e-1": 1})
    store = store_of(settings)
    wait_until(lambda: store.stats().get("joined") == 1, what="the good label joined")
    malformed = running.monitor.metrics.malformed
    expected = {"invalid_json": 2, "missing_event_id": 1, "invalid_label": 1}
    # counted once Redis has taken the batch: just after the join shows, not with it
    wait_until(
        lambda: {r: malformed.labels(r)._value.get() for r in expected} == expected,
        what="each malformed label counted",
    )
    assert running.monitor.readiness().ready


def test_a_redis_outage_reads_the_batches_again_and_joins_them_once_redis_is_back(
    settings: Settings, producer: KafkaProducer, monitor_factory: Any, redis_server: RedisServer
) -> None:
    """The batch Redis refused and the one polled while it was applying are both read again:
    no pair is lost, none is counted twice."""
    running = monitor_factory(settings)
    wait_until(lambda: running.monitor.readiness().ready, what="the monitor in its group")
    scores = {f"r-{i}": i / 400 for i in range(400)}
    redis_server.stop()
    try:
        for start in range(0, len(scores), 100):  # several batches, in flight one after another
            chunk = list(scores)[start : start + 100]
            send_predictions(
                producer, settings.output_topic, "v1", "primary", {e: scores[e] for e in chunk}
            )
            send_labels(producer, settings.labels_topic, {e: 1 for e in chunk})
        wait_until(lambda: running.monitor.redis_error is not None, what="the outage noticed")
        readiness = running.monitor.readiness()
        assert not readiness.ready and "Redis unavailable" in readiness.reason
        assert running.monitor.metrics.redis_errors._value.get() >= 1
    finally:
        redis_server.start()
    store = store_of(settings)
    wait_until(lambda: store.stats().get("joined") == len(scores), what="every pair joined")
    window = store.window("v1", "primary")
    assert dict(zip(window.event_ids, window.scores.tolist(), strict=True)) == scores
    assert store.stats()["predictions"] == store.stats()["labels"] == len(scores)
    wait_until(lambda: running.monitor.readiness().ready, what="ready again")
