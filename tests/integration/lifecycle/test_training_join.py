"""TrainingStore against a real redis-server: feature events meet their labels once, whichever
comes first; late and never-arriving labels are counted once; the window keeps the newest rows
by event time."""

from __future__ import annotations

import orjson
import pytest
import redis

from worker.lifecycle.pairing import Swept
from worker.lifecycle.records import FeatureRow, Label
from worker.lifecycle.training_rows import TrainingStore
from worker.settings import Settings

pytestmark = pytest.mark.integration

T = 1_700_000_000.0  # every `now` is explicit: the join window is driven by the test
WINDOW_S = 600.0


@pytest.fixture
def store(redis_client: redis.Redis, settings: Settings) -> TrainingStore:
    return TrainingStore(redis_client, settings.registry_prefix, WINDOW_S, window_rows=5)


def _row(event_id: str, ts: float, **features: float) -> FeatureRow:
    return FeatureRow(event_id, ts, orjson.dumps(features or {"f0": ts}).decode())


def _window(store: TrainingStore) -> list[tuple[str, float, float, dict[str, object]]]:
    rows = store.rows()
    return list(
        zip(rows.event_ids, rows.ts.tolist(), rows.labels.tolist(), rows.features, strict=True)
    )


def test_a_label_after_its_event_joins_once(store: TrainingStore) -> None:
    assert store.add([_row("e-1", 10.0, f0=0.5, f1=-2)], [], T) == 0
    assert store.add([], [Label("e-1", 1.0)], T + 5) == 1
    assert _window(store) == [("e-1", 10.0, 1.0, {"f0": 0.5, "f1": -2})]
    assert store.stats() == {"features": 1, "labels": 1, "joined": 1}


def test_a_label_before_its_event_joins_when_the_event_arrives(store: TrainingStore) -> None:
    assert store.add([], [Label("e-1", 0.0)], T) == 0
    assert store.add([_row("e-1", 10.0)], [], T + 1) == 1
    assert _window(store) == [("e-1", 10.0, 0.0, {"f0": 10.0})]


def test_an_event_and_its_label_in_one_batch_join(store: TrainingStore) -> None:
    assert store.add([_row("e-1", 10.0)], [Label("e-1", 1.0)], T) == 1


def test_a_replayed_batch_changes_nothing(store: TrainingStore) -> None:
    batch = ([_row("e-1", 10.0), _row("e-2", 11.0)], [Label("e-1", 1.0), Label("e-2", 0.0)])
    assert store.add(*batch, T) == 2
    assert store.add(*batch, T + 1) == 0
    assert store.add([_row("e-1", 99.0, f0=7.0)], [Label("e-1", 0.0)], T + 2) == 0
    assert [row[:3] for row in _window(store)] == [("e-1", 10.0, 1.0), ("e-2", 11.0, 0.0)]
    assert store.stats()["conflicting_labels"] == 1  # e-1's second label, counted once


def test_late_and_never_arriving_labels_are_counted_once_by_the_sweep(
    store: TrainingStore,
) -> None:
    store.add([_row("never", 1.0), _row("late", 2.0)], [Label("orphan", 1.0)], T)
    assert store.pending() == 3
    assert store.sweep(T + WINDOW_S - 1) == Swept(0, 0, 0)
    assert store.sweep(T + WINDOW_S) == Swept(unlabelled=2, unmatched_labels=1, closed=3)
    assert store.sweep(T + WINDOW_S + 1) == Swept(0, 0, 0)
    # the late label opens a window of its own, and is unmatched when that one closes
    assert store.add([], [Label("late", 1.0)], T + WINDOW_S + 2) == 0
    assert store.sweep(T + 2 * WINDOW_S + 2) == Swept(0, 1, 1)
    assert store.rows().event_ids == [] and store.pending() == 0
    stats = store.stats()
    assert (stats["unlabelled"], stats["unmatched_labels"]) == (2, 2)


def test_the_window_keeps_the_newest_rows_by_event_time(store: TrainingStore) -> None:
    events = [_row(f"e-{ts:g}", ts) for ts in (5.0, 1.0, 7.0, 3.0, 6.0, 2.0, 4.0)]
    store.add(events, [Label(e.event_id, 1.0) for e in events], T)
    assert [row[1] for row in _window(store)] == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert store.size() == 5
    assert store.stats()["joined"] == 7


def test_a_join_key_expires_by_itself_should_no_sweep_ever_run(
    store: TrainingStore, redis_client: redis.Redis
) -> None:
    store.add([_row("e-1", 1.0)], [], T)
    ttl_ms = redis_client.pttl(f"{store.prefix}:join:e-1")
    assert 0 < ttl_ms <= (2 * WINDOW_S + 60) * 1000
