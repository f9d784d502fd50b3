"""Canary and shadow versions in the stream, on the real broker and Redis, with both clients:
the canary's share and stickiness, the documented arm, each version's own scores, shadow
output kept apart, promote and abort mid-stream, and a route that cannot load."""

from __future__ import annotations

import time
import zlib
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import orjson
import pytest
from kafka import KafkaProducer

from tests.conftest import (
    TopicReader,
    run_scorer,
    steady_stream,
    wait_until,
)
from worker.models.registry import Registry
from worker.ops.heartbeat import workers_key_prefix
from worker.settings import Settings
from worker.tools.synthetic import event_bytes, feature_rows, train

pytestmark = pytest.mark.integration

KEYS = 2000


@pytest.fixture(scope="module")
def challenger() -> Any:
    return train("logistic", n=2000, seed=3)


@pytest.fixture
def models(publish: Any, logistic: Any, forest: Any, challenger: Any) -> dict[str, Any]:
    """v1 active, v2 and v3 published: the versions the experiments try."""
    publish(logistic, "v1")
    publish(forest, "v2", activate=False)
    publish(challenger, "v3", activate=False)
    return {"v1": logistic, "v2": forest, "v3": challenger}


def documented_arm(key: bytes, percent: float) -> str:
    """The README's formula, written again here: what a downstream analyst would compute."""
    bucket = zlib.crc32(b"scorer-arm:" + key) % 10000
    return "canary" if bucket < percent * 100 else "primary"


def send_keyed(producer: KafkaProducer, topic: str, start: int, count: int) -> dict[str, Any]:
    """`count` events with ids from `start`, keyed by one of KEYS users; id -> (key, row)."""
    rows = feature_rows(count, seed=start + 1)
    sent = {}
    for offset, row in enumerate(rows):
        i = start + offset
        key = f"user-{i % KEYS}".encode()
        producer.send(topic, key=key, value=event_bytes(f"e-{i}", row))
        sent[f"e-{i}"] = (key, row)
    producer.flush()
    return sent


def test_a_canary_takes_its_share_of_keys_sticky_across_a_restart_and_shadows_score_apart(
    settings: Settings,
    client_settings: Settings,
    models: dict[str, Any],
    producer: KafkaProducer,
    reader: TopicReader,
    registry: Registry,
    worker_factory: Any,
) -> None:
    registry.set_canary("v2", 10)
    registry.set_shadow(["v3"])

    sent = send_keyed(producer, settings.input_topic, 0, 10_000)
    first = worker_factory(client_settings)
    wait_until(lambda: len(reader.scored_ids()) == 10_000, what="the first half scored")
    first.stop()
    sent |= send_keyed(producer, settings.input_topic, 10_000, 10_000)
    worker_factory(client_settings)  # a new process: the arms must not move
    wait_until(lambda: reader.scored_ids() == set(sent), what="every event scored")
    wait_until(lambda: len(reader.shadow_predictions) >= len(sent), what="every shadow one")

    arms_of_key: dict[bytes, set[str]] = defaultdict(set)
    for prediction in reader.predictions:
        key = sent[prediction["event_id"]][0]
        arm = documented_arm(key, 10)
        assert prediction["arm"] == arm
        assert prediction["model_version"] == ("v2" if arm == "canary" else "v1")
        assert prediction["_key"] == key
        arms_of_key[key].add(arm)
    assert all(len(arms) == 1 for arms in arms_of_key.values())  # every key on one arm
    canary_share = Counter(p["arm"] for p in reader.predictions)["canary"] / len(sent)
    assert abs(canary_share - 0.10) <= 0.03, canary_share
    assert_own_scores(reader.predictions, sent, models)

    assert {p["event_id"] for p in reader.shadow_predictions} == set(sent)
    assert {(p["model_version"], p["arm"]) for p in reader.shadow_predictions} == {("v3", "shadow")}
    assert_own_scores(reader.shadow_predictions, sent, models)
    assert "v3" not in {p["model_version"] for p in reader.predictions}
    assert reader.dead_letters == []


def assert_own_scores(predictions: list[dict[str, Any]], sent: dict[str, Any], models: Any) -> None:
    """Each prediction equals its version's own predict_proba on the event's row, to 1e-9."""
    by_version: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for prediction in predictions:
        by_version[prediction["model_version"]].append(prediction)
    for version, group in by_version.items():
        rows = np.array([sent[p["event_id"]][1] for p in group])
        expected = models[version].predict_proba(rows)[:, 1]
        got = np.array([p["score"] for p in group])
        assert np.max(np.abs(got - expected)) <= 1e-9, version


def test_promote_and_abort_mid_stream_lose_no_event(
    settings: Settings,
    client_settings: Settings,
    models: dict[str, Any],
    producer: KafkaProducer,
    reader: TopicReader,
    registry: Registry,
    redis_client: Any,
    worker_factory: Any,
) -> None:
    worker = worker_factory(client_settings)
    wait_until(worker.assigned, what="partitions assigned")
    ids, sender = steady_stream(producer, settings.input_topic, 15_000, per_s=1000)
    steps = [
        (("canary", "v2", "--percent", "30"), ("v2", "canary")),
        (("promote", "--reason", "v2 wins"), ("v2", "primary")),
        (("canary", "v3", "--percent", "30"), ("v3", "canary")),
    ]
    for command, expected in steps:
        done = run_scorer(settings, "model", *command)
        assert done.returncode == 0, done.stderr
        wait_until(lambda e=expected: e in seen(reader), what=f"{expected} in the output")  # type: ignore[misc]
    aborting_at = time.time()
    done = run_scorer(settings, "model", "abort", "--reason", "v3 loses")
    assert done.returncode == 0, done.stderr
    # a heartbeat written after the abort: one from before the v3 canary also shows no route
    beat = wait_for_heartbeat(
        redis_client, settings, lambda h: h["route"] == {} and h["updated_at"] > aborting_at
    )
    sender.join()
    wait_until(lambda: reader.scored_ids() == set(ids), timeout=60, what="every event scored")
    assert len(reader.predictions) == len(ids)  # no switch scores anything twice
    # a batch scored after the heartbeat that shows the abort used the route without a canary
    after_abort = [p for p in reader.predictions if p["scored_at"] > beat["updated_at"] + 0.5]
    assert after_abort and {(p["model_version"], p["arm"]) for p in after_abort} == {
        ("v2", "primary")
    }
    assert registry.active_version() == "v2"
    assert [c["action"] for c in registry.changes()][:4] == ["abort", "canary", "promote", "canary"]
    assert registry.changes()[0]["reason"] == "v3 loses"
    assert reader.dead_letters == []


def test_a_route_that_cannot_load_keeps_the_primary_and_a_hand_edit_is_honoured(
    settings: Settings,
    publish: Any,
    logistic: Any,
    challenger: Any,
    producer: KafkaProducer,
    reader: TopicReader,
    redis_client: Any,
    worker_factory: Any,
) -> None:
    publish(logistic, "v1")
    publish(challenger, "bad", activate=False)
    publish(challenger, "v3", activate=False)
    redis_client.hset(f"{settings.registry_prefix}:version:bad", "artifact", b"tampered")
    broken = {"canary": {"version": "bad", "percent": 50}, "shadow": ["v3"]}
    redis_client.set(settings.route_key, orjson.dumps(broken))  # by hand, as an operator might
    worker = worker_factory(settings)
    wait_until(worker.assigned, what="partitions assigned")

    ids = [f"e-{i}" for i in range(300)]
    for i, row in enumerate(feature_rows(300, seed=4)):
        producer.send(settings.input_topic, key=ids[i].encode(), value=event_bytes(ids[i], row))
    producer.flush()
    wait_until(lambda: reader.scored_ids() == set(ids), what="every event scored")
    assert {(p["model_version"], p["arm"]) for p in reader.predictions} == {("v1", "primary")}
    assert reader.shadow_predictions == []  # the route is all or nothing on a worker
    heartbeat = wait_for_heartbeat(redis_client, settings, lambda h: h.get("route_error"))
    assert "bad" in heartbeat["route_error"] and "sha256" in heartbeat["route_error"]
    status = orjson.loads(run_scorer(settings, "status", "--json").stdout)
    assert status["route"] == broken and not status["converged"]

    redis_client.set(settings.route_key, b'{"canary": ')  # a hand edit cut short
    wait_for_heartbeat(
        redis_client, settings, lambda h: "not valid JSON" in (h["route_error"] or "")
    )
    status = orjson.loads(run_scorer(settings, "status", "--json").stdout)
    assert status["route"] is None and "not valid JSON" in status["route_error"]
    assert (
        "route           unreadable: route is not valid JSON"
        in run_scorer(settings, "status").stdout
    )

    redis_client.set(settings.route_key, orjson.dumps({"shadow": ["v3"]}))  # fixed by hand
    wait_for_heartbeat(redis_client, settings, lambda h: h.get("route") == {"shadow": ["v3"]})
    more = [f"m-{i}" for i in range(100)]
    for i, row in enumerate(feature_rows(100, seed=5)):
        producer.send(settings.input_topic, key=more[i].encode(), value=event_bytes(more[i], row))
    producer.flush()
    wait_until(
        lambda: {p["event_id"] for p in reader.shadow_predictions} == set(more),
        what="the shadow scoring once the route is fixed",
    )
    status = orjson.loads(run_scorer(settings, "status", "--json").stdout)
    assert status["converged"]
    assert reader.dead_letters == []


def seen(reader: TopicReader) -> set[tuple[str, str]]:
    return {(p["model_version"], p["arm"]) for p in list(reader.predictions)}


def wait_for_heartbeat(redis_client: Any, settings: Settings, condition: Any) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def check() -> bool:
        keys = list(
            redis_client.scan_iter(match=workers_key_prefix(settings.registry_prefix) + "*")
        )
        beats = [orjson.loads(value) for value in redis_client.mget(keys)] if keys else []
        found[:] = [beat for beat in beats if condition(beat)]
        return bool(found)

    wait_until(check, what="a heartbeat that shows it")
    return found[0]
