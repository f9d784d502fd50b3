"""Operations over real HTTP and Redis: metrics, health, readiness, /predict, heartbeats, status."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    RunningWorker,
    TopicReader,
    run_scorer,
    send_events,
    wait_until,
)
from worker.lifecycle.candidate import Rejection
from worker.lifecycle.metrics import MonitorMetrics, RetrainMetrics
from worker.ops.metrics import KAFKA_OPERATIONS, REDIS_OPERATIONS
from worker.settings import Settings
from worker.stream.events import Reason
from worker.tools.synthetic import FEATURES, feature_rows

pytestmark = pytest.mark.integration
DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def http(worker: RunningWorker, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    port = worker.worker.health.port  # type: ignore[union-attr]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, method="POST" if body is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample, parsed from the Prometheus text format."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"{name}{labels} not in /metrics")


def started(worker: RunningWorker) -> bool:
    return worker.worker.health is not None


def test_health_and_readiness_follow_the_worker_from_waiting_to_scoring(
    settings: Settings,
    publish: Any,
    logistic: Any,
    worker_factory: Any,
) -> None:
    worker = worker_factory(settings)
    wait_until(lambda: started(worker) and worker.worker.reloader is not None, what="HTTP up")
    assert http(worker, "/healthz") == (200, b'{"alive":true}')
    status, body = http(worker, "/readyz")
    assert status == 503
    assert orjson.loads(body)["reason"] == "waiting for an active version"

    publish(logistic, "v1")
    wait_until(lambda: http(worker, "/readyz")[0] == 200, what="ready once v1 loads and joins")
    assert orjson.loads(http(worker, "/readyz")[1]) == {
        "ready": True,
        "reason": "ok",
        "degraded": None,
    }
    assert http(worker, "/nope")[0] == 404
    assert_every_watched_series_exists(http(worker, "/metrics")[1].decode())


def watched_metric_names() -> set[str]:
    """Every scorer_* name the shipped dashboards and alert rules query."""
    text = "".join(
        path.read_text()
        for path in [*DEPLOY.glob("grafana/dashboards/*.json"), DEPLOY / "prometheus/alerts.yml"]
    )
    names = set(re.findall(r"\bscorer_[a-z_]+", text))
    return {re.sub(r"_(bucket|count|sum)$", "", name) for name in names}


def assert_every_watched_series_exists(text: str) -> None:
    """A fresh, ready worker that has scored nothing (and a fresh monitor and retrainer):
    every metric a dashboard or an alert reads is there, and every labelled counter has each of
    its known labels, at 0 (Prometheus' instrumentation guidance: no data must not stand for no
    errors)."""
    # the quality and retraining rules and panels read the monitor's and the retrainer's: fresh
    # ones export them from the start
    monitor = generate_latest(MonitorMetrics().registry).decode()
    retrainer = generate_latest(RetrainMetrics().registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text + monitor + retrainer)}
    exported = set(families) | {name + "_total" for name in families}
    assert watched_metric_names() - exported == set()
    assert metric(text, "scorer_ready") == 1
    assert metric(text, "scorer_active_key_info", version="v1") == 1
    for operation in KAFKA_OPERATIONS:
        assert metric(text, "scorer_kafka_errors_total", operation=operation) == 0
    for operation in REDIS_OPERATIONS:
        assert metric(text, "scorer_redis_errors_total", operation=operation) == 0
    for reason in Reason.codes():
        assert metric(text, "scorer_dead_letters_total", reason=reason) == 0
    for rejection in Rejection.codes():  # what ScorerRetrainerCannotFit counts
        labels = {"outcome": "rejected", "reason": rejection}
        assert metric(retrainer, "scorer_retrain_candidates_total", **labels) == 0


def test_metrics_count_predictions_dead_letters_reloads_and_latency(
    settings: Settings,
    publish: Any,
    logistic: Any,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
) -> None:
    publish(logistic, "v1")
    worker = worker_factory(settings)
    ids = send_events(producer, settings.input_topic, feature_rows(300, seed=1))
    producer.send(settings.input_topic, key=b"bad", value=b"{oops")
    producer.send(
        settings.input_topic,
        key=b"bad2",
        value=orjson.dumps({"event_id": "m", "features": {"f0": 1}}),
    )
    producer.flush()
    wait_until(
        lambda: len(reader.scored_ids()) == len(ids) and len(reader.dead_letters) == 2,
        what="all events back",
    )
    sha = worker.worker.holder.current().sha256

    def scraped() -> str:
        return http(worker, "/metrics")[1].decode()

    # the last batch counts once settled, at the poll after it (one batch in flight)
    settled = 'scorer_predictions_total{arm="primary",model_version="v1"} 300.0'
    wait_until(lambda: settled in scraped(), what="every prediction counted")
    text = scraped()
    assert metric(text, "scorer_events_consumed_total") == 302
    assert metric(text, "scorer_predictions_total", model_version="v1", arm="primary") == 300
    assert metric(text, "scorer_dead_letters_total", reason="invalid_json") == 1
    assert metric(text, "scorer_dead_letters_total", reason="missing_feature") == 1
    assert metric(text, "scorer_model_info", version="v1", sha256=sha, role="primary") == 1
    assert metric(text, "scorer_canary_percent") == 0
    assert metric(text, "scorer_route_failures_total") == 0
    assert metric(text, "scorer_model_reloads_total", result="ok") == 1
    assert metric(text, "scorer_model_reloads_total", result="failed") == 0
    assert metric(text, "scorer_end_to_end_latency_seconds_count") == 300
    assert metric(text, "scorer_batch_events_count") >= 1
    assert metric(text, "scorer_batch_scoring_seconds_count") >= 1
    assert 0 <= metric(text, "scorer_reload_check_age_seconds") < 10
    assert "scorer_consumer_lag_events{" in text
    assert "scorer_kafka_errors_total" in text and "scorer_redis_errors_total" in text


def test_predict_scores_synchronously_and_refuses_bad_bodies_with_reasons(
    settings: Settings,
    publish: Any,
    logistic: Any,
    worker_factory: Any,
) -> None:
    worker = worker_factory(settings)
    wait_until(lambda: started(worker), what="HTTP up")
    event = {"event_id": "q-1", "ts": 1.0, "features": {n: 0.25 for n in FEATURES}}
    assert http(worker, "/predict", orjson.dumps(event))[0] == 503  # no model yet

    publish(logistic, "v1")
    wait_until(lambda: worker.model_version() == "v1", what="v1 loaded")
    status, body = http(worker, "/predict", orjson.dumps(event))
    assert status == 200
    answer = orjson.loads(body)
    expected = logistic.predict_proba([[0.25] * len(FEATURES)])[0, 1]
    assert answer["event_id"] == "q-1" and answer["model_version"] == "v1"
    assert abs(answer["score"] - expected) <= 1e-9

    status, body = http(worker, "/predict", orjson.dumps([event, event | {"event_id": "q-2"}]))
    assert status == 200 and [p["event_id"] for p in orjson.loads(body)] == ["q-1", "q-2"]

    status, body = http(worker, "/predict", b"{not json")
    assert status == 400 and "not valid JSON" in orjson.loads(body)["error"]
    status, body = http(worker, "/predict", b"42")
    assert status == 400
    missing = {"event_id": "q-3", "features": {"f0": 1}}
    status, body = http(worker, "/predict", orjson.dumps([event, missing]))
    assert status == 400
    assert orjson.loads(body)["events"] == [
        {"index": 1, "error": "missing_feature", "detail": "required feature 'f1' is missing"}
    ]


def test_status_shows_the_fleet_its_versions_lag_and_dead_letters(
    settings: Settings,
    publish: Any,
    logistic: Any,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
) -> None:
    publish(logistic, "v1")
    workers = [worker_factory(settings), worker_factory(settings)]
    ids = send_events(producer, settings.input_topic, feature_rows(200, seed=2))
    producer.send(settings.input_topic, key=b"bad", value=b"[]")
    producer.flush()
    wait_until(
        lambda: len(reader.scored_ids()) == len(ids) and reader.dead_letters, what="events back"
    )

    def status() -> dict[str, Any]:
        done = run_scorer(settings, "status", "--json")
        assert done.returncode == 0, done.stderr
        answer: dict[str, Any] = orjson.loads(done.stdout)
        return answer

    wait_until(
        lambda: sum(w["events_scored"] for w in status()["workers"]) == len(ids),
        what="heartbeats counting every scored event",
    )
    report = status()
    assert report["active_version"] == "v1" and report["converged"] is True
    assert report["active"]["features"] == list(FEATURES)
    assert {w["worker_id"] for w in report["workers"]} == {w.worker.worker_id for w in workers}
    assert all(w["model_version"] == "v1" for w in report["workers"])
    assert report["kafka"]["dead_letters"] >= 1
    assert len(report["kafka"]["lag"]) == settings.topic_partitions
    assert all(row["committed"] is not None for row in report["kafka"]["lag"])

    table = run_scorer(settings, "status").stdout
    assert "2 live worker(s), converged on v1" in table
    assert "consumer lag" in table and "dead letters" in table

    for worker in workers:
        worker.stop()
    assert status()["workers"] == []  # a stopped worker deletes its heartbeat
