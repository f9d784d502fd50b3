"""JoinStore against a real redis-server: labels meet predictions once, windows close once; and
GuardKeeper carrying out a decision once across monitors, against a real registry."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis

from worker.infra.clients import connect_redis
from worker.lifecycle.guards import AUTHOR, Action, Decision, GuardKeeper
from worker.lifecycle.join import JoinStore
from worker.lifecycle.pairing import Swept
from worker.lifecycle.records import Label, Prediction
from worker.lifecycle.report import build_report
from worker.models.artifacts import inspect_estimator
from worker.models.compiled import compile_estimator
from worker.models.features import FeatureSchema
from worker.models.fidelity_rows import probe_rows
from worker.models.registry import Registry
from worker.models.usage import UsageStore
from worker.settings import Settings
from worker.tools.synthetic import FEATURES

pytestmark = pytest.mark.integration

T = 1_700_000_000.0  # every `now` is explicit: the join window is driven by the test
WINDOW_S = 600.0


@pytest.fixture
def store(redis_client: redis.Redis, settings: Settings) -> JoinStore:
    return JoinStore(redis_client, settings.registry_prefix, WINDOW_S, quality_window=100)


def _pairs(store: JoinStore, version: str, arm: str, since: float = 0.0) -> list[Any]:
    window = store.window(version, arm, since)
    return list(zip(window.event_ids, window.scores.tolist(), window.labels.tolist(), strict=True))


def _join_key(store: JoinStore, event_id: str) -> str:
    return f"{store.prefix}:join:{event_id}"


ARMS = [  # one event as the primary, a canary and a shadow version scored it
    Prediction("e-1", "v1", "primary", 0.2),
    Prediction("e-1", "v2", "canary", 0.3),
    Prediction("e-1", "v3", "shadow", 0.4),
]


def test_a_label_after_its_predictions_joins_every_version_and_arm_once(store: JoinStore) -> None:
    assert store.add(ARMS, [], T) == 0
    assert store.add([], [Label("e-1", 1.0)], T + 5) == 3
    assert store.windows() == [("v1", "primary"), ("v2", "canary"), ("v3", "shadow")]
    assert _pairs(store, "v1", "primary") == [("e-1", 0.2, 1.0)]
    assert _pairs(store, "v2", "canary") == [("e-1", 0.3, 1.0)]
    assert _pairs(store, "v3", "shadow") == [("e-1", 0.4, 1.0)]
    assert store.window("v1", "primary").joined_at.tolist() == [T + 5]
    assert store.stats() == {"predictions": 3, "labels": 1, "joined": 3}


def test_a_label_before_its_prediction_joins_when_the_prediction_arrives(store: JoinStore) -> None:
    assert store.add([], [Label("e-1", 0.0)], T) == 0
    assert store.windows() == []
    assert store.add([Prediction("e-1", "v1", "primary", 0.9)], [], T + 1) == 1
    assert _pairs(store, "v1", "primary") == [("e-1", 0.9, 0.0)]


def test_a_label_and_its_prediction_in_one_batch_join(store: JoinStore) -> None:
    assert store.add([Prediction("e-1", "v1", "primary", 0.9)], [Label("e-1", 1.0)], T) == 1


def test_applying_the_same_batch_twice_adds_nothing(store: JoinStore) -> None:
    predictions = [*ARMS, Prediction("e-2", "v1", "primary", 0.7)]
    labels = [Label("e-1", 1.0), Label("e-3", 0.0)]
    assert store.add(predictions, labels, T) == 3
    window, stats = _pairs(store, "v1", "primary"), store.stats()
    assert store.add(predictions, labels, T + 1) == 0
    assert _pairs(store, "v1", "primary") == window
    assert store.window("v1", "primary").joined_at.tolist() == [T]
    assert store.stats() == stats == {"predictions": 4, "labels": 2, "joined": 3}


def test_a_repeated_prediction_with_another_score_keeps_the_first(store: JoinStore) -> None:
    """Rescored after a redelivery, an event's score may differ in its last bits."""
    store.add([Prediction("e-1", "v1", "primary", 0.25)], [Label("e-1", 1.0)], T)
    assert store.add([Prediction("e-1", "v1", "primary", 0.2500000001)], [], T + 1) == 0
    assert _pairs(store, "v1", "primary") == [("e-1", 0.25, 1.0)]


def test_a_second_different_label_is_ignored_and_counted_as_conflicting(store: JoinStore) -> None:
    store.add([Prediction("e-1", "v1", "primary", 0.6)], [Label("e-1", 1.0)], T)
    assert store.add([], [Label("e-1", 0.0)], T + 1) == 0
    assert store.add([], [Label("e-1", 0.0)], T + 2) == 0  # a replay is not a new conflict
    assert store.add([Prediction("e-1", "v2", "shadow", 0.1)], [], T + 3) == 1
    assert _pairs(store, "v1", "primary") == [("e-1", 0.6, 1.0)]
    assert _pairs(store, "v2", "shadow") == [("e-1", 0.1, 1.0)]
    assert (store.stats()["conflicting_labels"], store.stats()["labels"]) == (1, 1)


def test_a_conflicting_label_on_an_event_never_predicted_is_still_unmatched(
    store: JoinStore,
) -> None:
    store.add([], [Label("e-1", 1.0), Label("e-1", 0.0)], T)
    assert store.sweep(T + WINDOW_S) == Swept(unlabelled=0, unmatched_labels=1, closed=1)


def test_the_sweep_counts_each_unjoined_event_once_and_deletes_its_keys(
    store: JoinStore, redis_client: redis.Redis, settings: Settings
) -> None:
    predictions = [Prediction("never-labelled", "v1", "primary", 0.5)]
    predictions.append(Prediction("joined", "v1", "primary", 0.5))
    store.add(predictions, [Label("never-predicted", 1.0), Label("joined", 1.0)], T)
    assert store.pending() == 3
    assert store.sweep(T + WINDOW_S - 1) == Swept(0, 0, 0)
    assert store.sweep(T + WINDOW_S) == Swept(unlabelled=1, unmatched_labels=1, closed=3)
    for event_id in ("never-labelled", "never-predicted", "joined"):
        assert redis_client.exists(_join_key(store, event_id)) == 0
    other_monitor = JoinStore(redis_client, settings.registry_prefix, WINDOW_S, 100)
    assert store.sweep(T + 10 * WINDOW_S) == Swept(0, 0, 0)
    assert other_monitor.sweep(T + 10 * WINDOW_S) == Swept(0, 0, 0)
    assert store.pending() == 0
    stats = other_monitor.stats()
    assert (stats["unlabelled"], stats["unmatched_labels"], stats["joined"]) == (1, 1, 1)
    assert _pairs(store, "v1", "primary") == [("joined", 0.5, 1.0)]


def test_two_monitors_sweeping_the_same_windows_count_each_once(
    store: JoinStore, redis_client: redis.Redis, settings: Settings
) -> None:
    other_monitor = JoinStore(redis_client, settings.registry_prefix, WINDOW_S, 100)
    store.add([Prediction(f"p-{i}", "v1", "primary", 0.5) for i in range(5)], [], T)
    other_monitor.add([], [Label(f"l-{i}", 0.0) for i in range(3)], T)
    swept = [store.sweep(T + WINDOW_S), other_monitor.sweep(T + WINDOW_S)]
    assert sorted(swept, key=lambda s: s.closed) == [Swept(0, 0, 0), Swept(5, 3, 8)]
    assert (store.stats()["unlabelled"], store.stats()["unmatched_labels"]) == (5, 3)


def test_a_label_after_the_sweep_closed_its_event_does_not_join(store: JoinStore) -> None:
    store.add([Prediction("e-1", "v1", "primary", 0.5)], [], T)
    assert store.sweep(T + WINDOW_S) == Swept(unlabelled=1, unmatched_labels=0, closed=1)
    assert store.add([], [Label("e-1", 1.0)], T + WINDOW_S + 1) == 0
    assert store.windows() == []
    assert store.sweep(T + 2 * WINDOW_S + 1) == Swept(unlabelled=0, unmatched_labels=1, closed=1)


def test_a_join_key_expires_by_itself_should_no_sweep_ever_run(
    store: JoinStore, redis_client: redis.Redis
) -> None:
    store.add([Prediction("e-1", "v1", "primary", 0.5)], [Label("e-2", 1.0)], T)
    for event_id in ("e-1", "e-2"):
        ttl_ms = redis_client.pttl(_join_key(store, event_id))
        assert 0 < ttl_ms <= (2 * WINDOW_S + 60) * 1000


def test_the_quality_window_keeps_only_the_newest_pairs(
    redis_client: redis.Redis, settings: Settings
) -> None:
    store = JoinStore(redis_client, settings.registry_prefix, WINDOW_S, quality_window=3)
    for i in range(5):
        store.add([Prediction(f"e-{i}", "v1", "primary", i / 10)], [Label(f"e-{i}", 1.0)], T + i)
    assert store.window("v1", "primary").event_ids == ["e-2", "e-3", "e-4"]
    assert store.stats()["joined"] == 5


def test_a_window_since_a_time_holds_the_pairs_joined_from_then_on(store: JoinStore) -> None:
    for i in range(4):
        store.add([Prediction(f"e-{i}", "v1", "primary", 0.5)], [Label(f"e-{i}", 0.0)], T + i)
    assert store.window("v1", "primary", since=T + 2).event_ids == ["e-2", "e-3"]
    assert store.window("v1", "primary", since=T + 9).event_ids == []
    assert store.window("v9", "canary").event_ids == []


def test_scores_and_labels_round_trip_exactly(store: JoinStore) -> None:
    scores = [0.1 + 0.2, 1 / 3, 5e-324, 1.0 - 2**-53, 0.0, 1.0, 123456.789]
    labels = [0.0, 1.0, 0.25, 1.0, -3.0, 2.0, 1e30]
    ids = [f"e-{i}" for i in range(len(scores))]
    store.add(
        [Prediction(e, "v1", "primary", s) for e, s in zip(ids, scores, strict=True)],
        [Label(e, label) for e, label in zip(ids, labels, strict=True)],
        T,
    )
    window = store.window("v1", "primary")
    got = zip(window.event_ids, window.scores.tolist(), window.labels.tolist(), strict=True)
    assert sorted(got) == sorted(zip(ids, scores, labels, strict=True))


@pytest.mark.parametrize(
    "event_id", ["with space", "a:b:c", "join:e-1", "ünïcödé 😀", "-", "7", "tab\there"]
)
def test_odd_event_ids_join(store: JoinStore, event_id: str) -> None:
    assert store.add([Prediction(event_id, "v1", "primary", 0.5)], [], T) == 0
    assert store.add([], [Label(event_id, 1.0)], T) == 1
    assert store.window("v1", "primary").event_ids == [event_id]
    assert store.sweep(T + WINDOW_S) == Swept(0, 0, 1)


# --- GuardKeeper: each decision carried out once, against a real registry ---


class Keeper:
    """A GuardKeeper with what it announced and which actions it reported taken."""

    def __init__(self, redis_client: redis.Redis, registry: Registry, settings: Settings) -> None:
        self.announced: list[dict[str, Any]] = []
        self.taken: list[Action] = []
        self.keeper = GuardKeeper(
            redis_client,
            registry,
            settings,
            announce=lambda message: self.announced.append(orjson.loads(message)),
            taken=self.taken.append,
        )


@pytest.fixture
def keepers(
    redis_client: redis.Redis, registry: Registry, settings: Settings
) -> tuple[Keeper, Keeper]:
    """Two monitors' keepers over one Redis."""
    return Keeper(redis_client, registry, settings), Keeper(redis_client, registry, settings)


FIGURES: dict[str, object] = {"role": "canary", "labelled": 600, "auc": 0.52}


def _decision(action: Action, version: str) -> Decision:
    return Decision(action, version, T, "guard: AUC 0.5200 < guard_min_auc 0.7", FIGURES)


def test_two_monitors_abort_a_breaching_canary_once(
    keepers: tuple[Keeper, Keeper], registry: Registry, publish: Callable[..., None], logistic: Any
) -> None:
    """...and only the canary: a shadow being tried stays."""
    for version in ("v1", "v2", "v4"):
        publish(logistic, version, activate=version == "v1")
    registry.set_canary("v2", 10)
    registry.set_shadow(["v4"])
    taken = [k.keeper.carry_out(_decision("abort", "v2")) for k in keepers]
    assert sorted(taken) == [False, True]
    assert registry.route().as_json() == {"shadow": ["v4"]}
    aborts = [c for c in registry.changes() if c["action"] == "abort"]
    assert len(aborts) == 1
    assert aborts[0]["by"] == AUTHOR == "scorer-monitor"
    assert str(aborts[0]["reason"]).startswith("guard:")
    assert aborts[0]["figures"] == FIGURES
    assert [m["action"] for k in keepers for m in k.announced] == ["abort"]
    assert [a for k in keepers for a in k.taken] == ["abort"]


def test_an_abort_for_a_version_no_longer_the_canary_changes_nothing(
    keepers: tuple[Keeper, Keeper], registry: Registry, publish: Callable[..., None], logistic: Any
) -> None:
    for version in ("v1", "v2", "v3"):
        publish(logistic, version, activate=version == "v1")
    registry.set_canary("v3", 10)
    registry.set_canary("v2", 5, by="alice")  # a person replaced the canary in between
    changes = registry.changes()
    monitor = keepers[0]
    assert monitor.keeper.carry_out(_decision("abort", "v3")) is False
    assert registry.route().as_json() == {"canary": {"version": "v2", "percent": 5.0}}
    assert registry.changes() == changes
    assert (monitor.announced, monitor.taken) == ([], [])


def test_a_fresh_primary_is_rolled_back_once_and_blocked(
    keepers: tuple[Keeper, Keeper],
    registry: Registry,
    redis_client: redis.Redis,
    publish: Callable[..., None],
    logistic: Any,
) -> None:
    publish(logistic, "v1")
    publish(logistic, "v2")
    monitor, other = keepers
    assert monitor.keeper.has_previous()
    assert monitor.keeper.carry_out(_decision("rollback", "v2")) is True
    assert other.keeper.carry_out(_decision("rollback", "v2")) is False
    assert registry.active_version() == "v1"
    newest = registry.changes()[0]
    assert (newest["action"], newest["version"], newest["by"]) == ("rollback", "v1", AUTHOR)
    assert newest["figures"] == FIGURES
    assert redis_client.smembers(monitor.keeper.blocked_key) == {b"v2"}
    assert [(m["type"], m["version"]) for m in monitor.announced] == [("activate", "v1")]
    assert (monitor.taken, other.taken, other.announced) == (["rollback"], [], [])
    assert newest["rolled_back"] == "v2"


def test_a_guard_rollback_never_returns_to_a_version_a_guard_took_out(
    keepers: tuple[Keeper, Keeper], registry: Registry, publish: Callable[..., None], logistic: Any
) -> None:
    """v2 was rolled back by a guard; v3, activated after it, fails too: back to v1."""
    for version in ("v1", "v2"):
        publish(logistic, version)
    monitor = keepers[0]
    assert monitor.keeper.carry_out(_decision("rollback", "v2"))
    registry.activate("v2", by="alice")  # a person may bring it back
    publish(logistic, "v3")
    assert monitor.keeper.carry_out(_decision("rollback", "v3"))
    assert registry.active_version() == "v1"
    assert monitor.keeper.blocked() == {"v2", "v3"}


def test_an_alert_changes_nothing_in_the_registry_and_is_taken_once(
    keepers: tuple[Keeper, Keeper], registry: Registry, publish: Callable[..., None], logistic: Any
) -> None:
    publish(logistic, "v1")
    changes = registry.changes()
    monitor, other = keepers
    assert not monitor.keeper.has_previous()
    assert monitor.keeper.carry_out(_decision("alert", "v1")) is True
    assert other.keeper.carry_out(_decision("alert", "v1")) is False
    assert registry.active_version() == "v1"
    assert registry.changes() == changes
    assert (monitor.announced, other.announced) == ([], [])
    assert (monitor.taken, other.taken) == (["alert"], [])


def test_the_canary_is_compared_with_the_primary_over_one_span_when_windows_are_trimmed(
    settings: Settings, registry: Registry, publish: Callable[..., None], logistic: Any
) -> None:
    """The primary fills its window faster: once trimmed to quality_window it starts later
    than the canary's, and the comparison cuts the canary's pairs to the same start."""
    publish(logistic, "v1")
    publish(logistic, "v2", activate=False)
    registry.set_canary("v2", 20)
    small = settings.replace(quality_window=50)
    store = JoinStore(connect_redis(small), small.registry_prefix, 600, 50)
    start = time.time() + 10  # after the canary was set

    def joined(version: str, arm: str, times: range) -> None:
        for t in times:
            event_id = f"{version}-{t}"
            store.add([Prediction(event_id, version, arm, (t % 7) / 7)], [], start + t)
            store.add([], [Label(event_id, float(t % 2))], start + t)

    joined("v1", "primary", range(1, 401))  # kept: 351..400
    joined("v2", "canary", range(300, 380))  # kept: 330..379
    usage = UsageStore.for_settings(connect_redis(small), small)
    report = build_report(store, usage, registry, small, now=start + 500).as_json()
    comparison = report["comparison"]
    assert (comparison["canary_labelled"], comparison["primary_labelled"]) == (29, 50)
    assert report["versions"]["v2"]["arms"]["canary"]["labelled"] == 50


def test_a_pickle_free_guard_rollback_passes_over_versions_its_workers_would_refuse(
    redis_client: redis.Redis,
    registry: Registry,
    settings: Settings,
    publish: Callable[..., None],
    logistic: Any,
) -> None:
    """allow_pickle false: v3 fails; v2 before it is joblib only, so the rollback lands on v1,
    which has ONNX bytes; with no such version left there is nothing to return to."""
    info = inspect_estimator(logistic, FEATURES)
    probe = probe_rows(logistic, FeatureSchema.numbers(FEATURES), None)
    compiled = compile_estimator(logistic, info, probe, 1e-5)
    for version in ("v1", "v3"):
        registry.publish(None, version, info, compiled=compiled, runtime="onnx")
    registry.activate("v1")
    publish(logistic, "v2")  # joblib only, activated
    registry.activate("v3")
    monitor = Keeper(redis_client, registry, settings.replace(allow_pickle=False))

    assert monitor.keeper.avoided() == {"v2"}
    read_again: list[str] = []
    with pytest.MonkeyPatch.context() as patch:  # a stored version never changes: read once
        patch.setattr(registry, "entry", read_again.append)
        assert monitor.keeper.avoided() == {"v2"} and read_again == []
    assert monitor.keeper.carry_out(_decision("rollback", "v3"))
    assert registry.active_version() == "v1"
    assert not monitor.keeper.has_previous()  # v2 refused, v3 blocked: an alert next time
