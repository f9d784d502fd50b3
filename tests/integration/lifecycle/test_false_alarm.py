"""The false-alarm check (`make soak`, outside CI): a healthy canary beside the primary for
SOAK_SECONDS seconds (default 600) of steady traffic and clicks 2 s late, every label-based
guard on, and no guard acts."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Any

import numpy as np
import orjson
import pytest
from kafka import KafkaProducer
from sklearn.linear_model import LogisticRegression

from tests.integration.lifecycle.conftest import guard_changes, store_of
from worker.models.registry import Registry
from worker.settings import Settings
from worker.tools.synthetic import FEATURES, click_labels, click_probability, event_bytes

pytestmark = [pytest.mark.integration, pytest.mark.soak, pytest.mark.usefixtures("labels_topic")]

RATE, DELAY_S = 500, 2.0
GUARDS = {
    "guard_min_labels": 300,
    "guard_min_auc": 0.65,
    "guard_max_logloss": 0.6,
    "guard_max_auc_drop": 0.02,
    "guard_max_error_rate": 0.01,
    "quality_interval_s": 1.0,
}


def healthy(seed: int) -> Any:
    rows = np.random.default_rng(seed).normal(size=(8000, len(FEATURES)))
    return LogisticRegression(max_iter=500).fit(rows, click_labels(rows, seed=seed))


def stream(producer: KafkaProducer, settings: Settings, seconds: float) -> int:
    """Events at RATE per second, each event's click (drawn from its true probability)
    DELAY_S later; the number of events sent."""
    rng, pending, sent = np.random.default_rng(3), deque[tuple[float, bytes]](), 0
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        rows = rng.normal(size=(RATE // 10, len(FEATURES))).round(4)
        clicks = rng.random(len(rows)) < click_probability(rows)
        for row, click in zip(rows, clicks, strict=True):
            event_id = f"s-{sent}"
            producer.send(
                settings.input_topic, key=event_id.encode(), value=event_bytes(event_id, row)
            )
            label = orjson.dumps({"event_id": event_id, "label": int(click), "ts": time.time()})
            pending.append((time.monotonic() + DELAY_S, label))
            sent += 1
        while pending and pending[0][0] <= time.monotonic():
            producer.send(settings.labels_topic, pending.popleft()[1])
        threading.Event().wait(0.1)
    return sent


def test_a_healthy_canary_is_never_aborted(
    settings: Settings,
    publish: Any,
    registry: Registry,
    producer: KafkaProducer,
    worker_factory: Any,
    monitor_factory: Any,
) -> None:
    settings = settings.replace(**GUARDS)
    publish(healthy(1), "v1")
    publish(healthy(2), "v2", activate=False)
    registry.set_canary("v2", 20, by="soak")
    worker_factory(settings)
    running = monitor_factory(settings)
    seconds = float(os.environ.get("SOAK_SECONDS", "600"))
    sent = stream(producer, settings, seconds)
    evaluations = running.monitor.evaluations
    labelled = len(store_of(settings).window("v2", "canary").event_ids)
    assert labelled >= GUARDS["guard_min_labels"], "the guards never had enough labels to act"
    assert registry.route().as_json() == {"canary": {"version": "v2", "percent": 20.0}}
    assert guard_changes(registry, "abort") == guard_changes(registry, "rollback") == []
    taken = running.monitor.metrics.guard_actions
    assert sum(taken.labels(a)._value.get() for a in ("abort", "rollback", "alert")) == 0
    print(
        f"false-alarm soak: {seconds:.0f} s, {sent} events, canary labelled {labelled}, "
        f"{evaluations} evaluations, no guard action"
    )
