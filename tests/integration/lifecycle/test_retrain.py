"""`scorer retrain` on the real broker and Redis: feature events joined to their labels, a
better candidate published as a canary with its note and figures, a candidate no better than
the primary recorded and dropped, a person's canary left alone, two retrainers that publish
once, a retrainer SIGKILLed mid-fit that loses no row and publishes nothing half-done, a round
whose lease ran out that publishes nothing, a Redis outage that loses no join, and the refusal
to run without pickle."""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import pytest
from kafka import KafkaProducer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from tests.conftest import RedisServer, wait_until
from worker.errors import RegistryError
from worker.infra.clients import connect_redis
from worker.lifecycle.candidate import fit_candidate
from worker.lifecycle.candidate_log import CandidateLog
from worker.lifecycle.metrics import RetrainMetrics
from worker.lifecycle.records import FeatureRow, Label
from worker.lifecycle.retraining import Trainer
from worker.lifecycle.training_rows import TrainingStore
from worker.models.artifacts import inspect_estimator
from worker.models.registry import CanaryRequest, Registry
from worker.settings import Settings
from worker.tools import ctr
from worker.tools.synthetic import FEATURES, click_labels, event_bytes, feature_rows

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("labels_topic")]

RETRAIN = {
    "retrain_min_rows": 1000,
    "retrain_window_rows": 5000,
    "retrain_holdout_share": 0.3,
    "retrain_interval_s": 1.0,
    "retrain_min_new_labels": 1_000_000,
    "retrain_canary_percent": 15.0,
    "quality_interval_s": 0.5,
}


def send_labelled(
    producer: KafkaProducer, settings: Settings, n: int, seed: int, prefix: str = "r"
) -> list[str]:
    """n feature events, then their clicks (drawn from the synthetic truth)."""
    rows = feature_rows(n, seed=seed)
    clicks = click_labels(rows, seed=seed)
    ids = [f"{prefix}-{seed}-{i}" for i in range(n)]
    for i, (event_id, row) in enumerate(zip(ids, rows, strict=True)):
        value = event_bytes(event_id, row, ts=1_800_000_000.0 + i)
        producer.send(settings.input_topic, key=event_id.encode(), value=value)
    for event_id, click in zip(ids, clicks.tolist(), strict=True):
        label = orjson.dumps({"event_id": event_id, "label": click, "ts": 1.0})
        producer.send(settings.labels_topic, key=event_id.encode(), value=label)
    producer.flush()
    return ids


def broken_model() -> LogisticRegression:
    """Trained on shuffled clicks: a primary any refit beats."""
    rows = feature_rows(3000, seed=5)
    shuffled = np.random.default_rng(0).permutation(click_labels(rows, seed=5))
    return LogisticRegression(max_iter=500).fit(rows, shuffled)


def auto_versions(registry: Registry) -> list[str]:
    return [e.version for e in registry.versions() if e.version.startswith("auto-")]


def candidates(settings: Settings, outcome: str) -> list[dict[str, Any]]:
    log = CandidateLog(connect_redis(settings), settings.registry_prefix)
    return [c for c in log.recent(1000) if c["outcome"] == outcome]


def test_a_better_candidate_is_published_as_a_canary_with_its_note_and_figures(
    client_settings: Settings,
    publish: Any,
    registry: Registry,
    producer: KafkaProducer,
    retrainer_factory: Any,
    scorer_main: Any,
) -> None:
    """The primary learned from shuffled clicks; the retrainer joins the stream's events to
    their clicks, fits a clone on the older rows, finds it better on the newest, and publishes
    it through the registry as an automatic canary, recorded with its window and figures.
    Malformed events and labels on the way are counted and logged; the retrainer goes on.
    With each Kafka client."""
    settings = client_settings.replace(**(RETRAIN | {"retrain_min_rows": 2500}))  # all rows
    publish(broken_model(), "v1")
    producer.send(settings.input_topic, b"not json")
    producer.send(settings.input_topic, orjson.dumps({"event_id": "x", "features": 3}))
    producer.send(settings.labels_topic, orjson.dumps({"event_id": "y", "label": "click"}))
    send_labelled(producer, settings, 2500, seed=21)
    running = retrainer_factory(settings)

    wait_until(lambda: registry.route().canary is not None, timeout=60, what="an auto canary")
    canary = registry.route().canary
    assert canary is not None and canary.version.startswith("auto-")
    assert canary.percent == 15.0
    entry = registry.entry(canary.version)
    training = entry.training
    assert training is not None and training["based_on"] == "v1"
    assert training["method"] == "refit" and training["trigger"] == "interval"
    assert training["window"]["rows"] == 2500
    assert training["train"]["rows"] == 1750 and training["holdout"]["rows"] == 750
    assert training["train"]["to"] < training["holdout"]["from"]  # the holdout is the newest
    holdout = training["holdout"]
    assert holdout["comparison"]["verdict"] == "better" and holdout["comparison"]["low"] > 0
    assert holdout["candidate"]["auc"] > holdout["primary"]["auc"] + 0.1
    assert entry.note.startswith("auto: refit of v1 on 1750 rows")
    assert entry.estimator_class.endswith("LogisticRegression")
    assert registry.reference(canary.version) is not None  # drift: from its training rows
    change: dict[str, Any] = registry.changes(5)[0]
    assert (change["action"], change["by"], change["version"]) == (
        "canary",
        "scorer-retrain",
        canary.version,
    )
    assert change["training"]["holdout"]["rows"] == 750

    metrics = running.retrainer.metrics
    published = metrics.candidates.labels("published", "")
    wait_until(lambda: published._value.get() == 1, what="counted just after the publish")
    expected = {"invalid_json": 1, "invalid_features": 1, "invalid_label": 1}
    wait_until(  # counted once Redis has taken the batch, one reason after another
        lambda: {r: metrics.malformed.labels(r)._value.get() for r in expected} == expected,
        what="each malformed record counted",
    )
    health = running.retrainer.health
    assert health is not None
    wait_until(lambda: metrics.window_rows._value.get() == 2500, what="a check after the round")
    with urllib.request.urlopen(f"http://127.0.0.1:{health.port}/metrics") as response:
        text = response.read().decode()
    assert 'scorer_retrain_candidates_total{outcome="published",reason=""} 1.0' in text
    assert "scorer_retrain_window_rows 2500.0" in text
    assert running.retrainer.readiness().ready

    running.stop()  # its log lines would mix with the command's output
    scorer_main(settings, "model", "list")  # and what it printed before
    listed = orjson.loads(scorer_main(settings, "model", "list", "--json").stdout)
    (row,) = [r for r in listed["versions"] if r["version"] == canary.version]
    assert (row["role"], row["fate"], row["training"]["based_on"]) == ("canary", "canary", "v1")
    assert canary.version in scorer_main(settings, "model", "list").stdout
    logged = orjson.loads(scorer_main(settings, "model", "candidates", "--json").stdout)
    assert [(c["candidate"], c["outcome"]) for c in logged["candidates"]] == [
        (canary.version, "published")
    ]


def test_a_candidate_no_better_than_the_primary_is_recorded_and_not_published(
    settings: Settings,
    publish: Any,
    logistic: Any,
    registry: Registry,
    producer: KafkaProducer,
    retrainer_factory: Any,
) -> None:
    """With the data as the primary learned it, a refit on the window is no better: the
    candidate is recorded as rejected (not_better) with its figures, and nothing is stored."""
    settings = settings.replace(**RETRAIN)
    publish(logistic, "v1")
    send_labelled(producer, settings, 2500, seed=22)
    running = retrainer_factory(settings)

    wait_until(lambda: running.rounds() >= 2, timeout=60, what="two rounds")
    assert auto_versions(registry) == [] and registry.route().empty
    rejected = candidates(settings, "rejected")
    assert rejected and {c["why"] for c in rejected} <= {"not_better", "worse_logloss"}
    assert rejected[0]["training"]["holdout"]["comparison"]["verdict"] != "better"
    counted = running.retrainer.metrics.candidates
    total = sum(
        counted.labels("rejected", why)._value.get() for why in ("not_better", "worse_logloss")
    )
    assert total == len(rejected)


def test_a_persons_canary_is_left_alone(
    settings: Settings,
    publish: Any,
    logistic: Any,
    registry: Registry,
    producer: KafkaProducer,
    retrainer_factory: Any,
) -> None:
    """While someone's canary runs, the retrainer fits nothing, even against a broken primary."""
    settings = settings.replace(**RETRAIN)
    publish(broken_model(), "v1")
    publish(logistic, "v2", activate=False)
    registry.set_canary("v2", 5, by="alice", reason="trying v2")
    send_labelled(producer, settings, 2500, seed=23)
    running = retrainer_factory(settings)
    store = TrainingStore.for_settings(connect_redis(settings), settings)

    wait_until(lambda: store.size() == 2500, timeout=60, what="the window filled")
    wait_until(running.checked_again(), what="two checks with the window full")
    assert running.rounds() == 0 and auto_versions(registry) == []
    route = registry.route()
    assert route.canary is not None and (route.canary.version, route.canary.percent) == ("v2", 5)


def test_two_retrainers_publish_one_canary(
    settings: Settings,
    publish: Any,
    registry: Registry,
    producer: KafkaProducer,
    retrainer_factory: Any,
) -> None:
    """Both share the join and see the same round due; one fits it and publishes, the other
    finds the round taken (and then a canary running). Published for pickle-free workers
    (retrain_format onnx), it keeps its joblib bytes too: the next round clones it."""
    settings = settings.replace(**RETRAIN, retrain_format="onnx")
    publish(broken_model(), "v1")
    send_labelled(producer, settings, 2500, seed=24)
    first, second = retrainer_factory(settings), retrainer_factory(settings)

    wait_until(lambda: registry.route().canary is not None, timeout=60, what="an auto canary")
    for running in (first, second):  # two more checks each, with the canary in place
        wait_until(running.checked_again(), what="two more checks")
    assert len(auto_versions(registry)) == 1
    assert first.rounds() + second.rounds() == 1
    (version,) = auto_versions(registry)
    entry = registry.entry(version)
    assert (entry.format, entry.runtime, entry.runtime_for(allow_pickle=False)) == (
        "both",
        "onnx",
        "onnx",
    )
    assert registry.artifact(version, "joblib")
    published = [c for c in registry.changes(100) if c["action"] == "canary"]
    assert len(published) == 1


def test_a_retrainer_killed_mid_fit_loses_no_row_and_publishes_nothing(
    settings: Settings,
    publish: Any,
    registry: Registry,
    producer: KafkaProducer,
    process_factory: Any,
    retrainer_factory: Any,
    tmp_path: Any,
) -> None:
    """A slow estimator (3,000 boosting stages); the retrainer process is SIGKILLed once it
    logs the start of its fit. Nothing was published, the route is untouched, the window and
    the join are whole; a new retrainer, once the killed one's lease ran out, joins new events
    to the same window and carries the round out."""
    settings = settings.replace(**RETRAIN)
    rows = feature_rows(200, seed=6)
    slow = GradientBoostingClassifier(n_estimators=3000, max_depth=2, random_state=0)
    publish(slow.fit(rows, click_labels(rows, seed=6)), "v1")
    send_labelled(producer, settings, 2500, seed=25)
    process = process_factory(settings, "retrain")
    log_path = tmp_path / "scorer-0.log"
    wait_until(
        lambda: b"retrain.fit_started" in log_path.read_bytes(), timeout=60, what="the fit begun"
    )
    process.send_signal(signal.SIGKILL)
    process.wait(10)

    store = TrainingStore.for_settings(connect_redis(settings), settings)
    assert store.size() == 2500 and store.stats()["joined"] == 2500
    assert auto_versions(registry) == [] and registry.route().empty
    assert candidates(settings, "rejected") == []

    send_labelled(producer, settings, 500, seed=26, prefix="after")
    running = retrainer_factory(settings)
    wait_until(lambda: store.size() == 3000, timeout=60, what="new events joined")
    wait_until(lambda: running.rounds() >= 1, timeout=120, what="the round carried out")
    assert len(auto_versions(registry)) + len(candidates(settings, "rejected")) >= 1


@pytest.mark.parametrize("obstacle", ["active changed", "canary set", "route unreadable"])
def test_a_candidate_is_stored_with_its_canary_or_not_at_all(
    obstacle: str, settings: Settings, publish: Any, logistic: Any, registry: Registry
) -> None:
    """Published and put on canary in one transaction, only while the version it was judged
    against is active and the route is readable and holds no canary."""
    publish(logistic, "v1")
    publish(logistic, "v2", activate=False)
    client = connect_redis(settings)
    if obstacle == "active changed":
        registry.activate("v2")
    elif obstacle == "canary set":
        registry.set_canary("v2", 5, by="alice")
    else:
        client.set(registry.route_key, b"{not json")
    route_before = client.get(registry.route_key)
    request = CanaryRequest(10.0, "v1", "scorer-retrain", "test", {})
    with pytest.raises(RegistryError):
        registry.publish(b"bytes", "auto-1", inspect_estimator(logistic, FEATURES), canary=request)
    assert "auto-1" not in {e.version for e in registry.versions()}
    assert client.get(registry.route_key) == route_before


def test_a_round_whose_lease_ran_out_during_the_fit_publishes_nothing(
    settings: Settings,
    publish: Any,
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fit outlasted the lease and another retrainer took the lock: the candidate is
    recorded as refused, nothing is stored, and the other's lock is left as it is."""
    settings = settings.replace(**RETRAIN)
    publish(broken_model(), "v1")
    client = connect_redis(settings)
    store = TrainingStore.for_settings(client, settings)
    rows = feature_rows(1500, seed=27)
    features = [
        FeatureRow(
            f"l-{i}",
            1_800_000_000.0 + i,
            orjson.dumps(dict(zip(FEATURES, row.tolist(), strict=True))).decode(),
        )
        for i, row in enumerate(rows)
    ]
    clicks = click_labels(rows, seed=27).tolist()
    store.add(features, [Label(f"l-{i}", float(c)) for i, c in enumerate(clicks)], 1.0)
    lock_key = f"{store.prefix}:fitting"

    def fit_while_the_lease_runs_out(*args: Any) -> Any:
        client.set(lock_key, b"another-retrainer")  # as if ours expired and another took it
        return fit_candidate(*args)

    monkeypatch.setattr("worker.lifecycle.retraining.fit_candidate", fit_while_the_lease_runs_out)
    metrics = RetrainMetrics()
    trainer = Trainer(
        client, store, registry, settings, metrics=metrics, announce=lambda message: None
    )
    trainer.check()

    assert trainer.rounds == 1
    assert auto_versions(registry) == [] and registry.route().empty
    (refused,) = candidates(settings, "rejected")
    assert (refused["why"], refused["detail"]) == ("publish_refused", "the fitting lease ran out")
    assert metrics.candidates.labels("rejected", "publish_refused")._value.get() == 1
    assert client.get(lock_key) == b"another-retrainer"


def test_a_redis_outage_loses_no_join_and_the_retrainer_goes_on(
    settings: Settings,
    producer: KafkaProducer,
    retrainer_factory: Any,
    redis_server: RedisServer,
) -> None:
    """Batches Redis refused are read again once it is back, and joined once; the checks beside
    the loop fail while it is away (counted, not ready) and go on after."""
    settings = settings.replace(quality_interval_s=0.5)
    running = retrainer_factory(settings)
    retrainer = running.retrainer
    applied: list[bool] = []  # what the join loop's batches came to (False: Redis refused)
    apply = retrainer._apply

    def noting(store: TrainingStore, records: list[Any]) -> bool:
        applied.append(apply(store, records))
        return applied[-1]

    retrainer._apply = noting
    wait_until(lambda: retrainer.readiness().ready, what="the retrainer in its group")
    redis_server.stop()
    try:
        send_labelled(producer, settings, 400, seed=28)
        wait_until(lambda: False in applied, what="a batch Redis refused")
        readiness = retrainer.readiness()
        assert not readiness.ready and "Redis unavailable" in readiness.reason
        assert retrainer.metrics.redis_errors._value.get() >= 1
    finally:
        redis_server.start()
    store = TrainingStore.for_settings(connect_redis(settings), settings)
    wait_until(lambda: store.size() == 400, what="every row joined")
    assert store.stats()["joined"] == 400 and store.stats()["features"] == 400
    wait_until(lambda: retrainer.readiness().ready, what="ready again")
    wait_until(running.checked_again(), what="checks beside the loop again")


def test_the_retrainer_refuses_to_run_without_pickle(settings: Settings, scorer_main: Any) -> None:
    """It clones the active estimator from its joblib bytes: with allow_pickle false it says
    so and exits before it joins anything."""
    done = scorer_main(settings.replace(allow_pickle=False), "retrain")
    assert done.returncode != 0
    assert "allow_pickle = true" in done.stderr


def test_a_ctr_pipeline_is_refitted_on_its_categories_and_missing_values(
    settings: Settings,
    scorer_main: Any,
    registry: Registry,
    producer: KafkaProducer,
    retrainer_factory: Any,
    tmp_path: Path,
) -> None:
    """The primary is Pipeline (a) fitted on shuffled clicks; the retrainer keeps each event's
    categories and missing values, refits a clone on a DataFrame of them and publishes it as a
    canary with the version's kinds, missing values and form."""
    settings = settings.replace(**(RETRAIN | {"retrain_min_rows": 2000}))
    frame = ctr.ctr_frame(3000, seed=31)
    clicks = ctr.clicks(frame, seed=31)
    shuffled = np.random.default_rng(0).permutation(clicks)
    path = tmp_path / "onehot.joblib"
    joblib.dump(ctr.onehot_pipeline().fit(frame, shuffled), path)
    assert (
        scorer_main(
            settings, "model", "publish", str(path), "--version", "v1", "--activate"
        ).returncode
        == 0
    )
    for i, (features, click) in enumerate(
        zip(ctr.event_features(frame), clicks.tolist(), strict=True)
    ):
        event_id = f"c-{i}"
        value = ctr.ctr_event_bytes(event_id, features, ts=1_800_000_000.0 + i)
        producer.send(settings.input_topic, key=event_id.encode(), value=value)
        label = orjson.dumps({"event_id": event_id, "label": click, "ts": 1.0})
        producer.send(settings.labels_topic, key=event_id.encode(), value=label)
    producer.flush()
    retrainer_factory(settings)

    wait_until(lambda: registry.route().canary is not None, timeout=90, what="an auto canary")
    canary = registry.route().canary
    assert canary is not None
    entry, primary = registry.entry(canary.version), registry.entry("v1")
    assert entry.schema == primary.schema and entry.schema.categories == ctr.CATEGORIES
    assert entry.schema.accepts_missing and entry.schema.form == "frame"
    assert entry.training is not None and entry.training["window"]["incomplete"] == 0
    holdout = entry.training["holdout"]
    assert holdout["candidate"]["auc"] > holdout["primary"]["auc"]
