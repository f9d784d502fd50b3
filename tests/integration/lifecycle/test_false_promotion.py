"""The false-promotion check (`make soak`, outside CI): a worker, a monitor and a retrainer for
SOAK_SECONDS seconds (default 600) of steady traffic whose truth never changes, clicks 2 s late,
automatic promotion on: candidate after candidate is fitted, and no version is promoted."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.integration.lifecycle.test_false_alarm import healthy, stream
from worker.models.registry import Registry
from worker.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.soak, pytest.mark.usefixtures("labels_topic")]

# as the drift demo runs the loop: a round every 30 s or 4,000 new rows
LOOP = {
    "quality_interval_s": 1.0,
    "guard_min_labels": 300,
    "guard_min_auc": 0.7,
    "guard_promote_min_labels": 500,
    "retrain_window_rows": 4000,
    "retrain_min_rows": 2000,
    "retrain_min_new_labels": 4000,
    "retrain_interval_s": 30.0,
    "retrain_canary_percent": 20.0,
}


def test_no_version_is_promoted_while_the_data_stays_the_same(
    settings: Settings,
    publish: Any,
    registry: Registry,
    producer: KafkaProducer,
    worker_factory: Any,
    monitor_factory: Any,
    retrainer_factory: Any,
) -> None:
    settings = settings.replace(**LOOP)
    publish(healthy(1), "v1")
    worker_factory(settings)
    monitor_factory(settings)
    retrainer = retrainer_factory(settings)
    seconds = float(os.environ.get("SOAK_SECONDS", "600"))
    sent = stream(producer, settings, seconds)
    changes = registry.changes(1000)
    fitted = [c for c in changes if c["by"] == "scorer-retrain"]
    published = [c["version"] for c in fitted if c["action"] == "canary"]
    rejected = Counter(c["why"] for c in fitted if c["action"] == "candidate")
    promoted = [c for c in changes if c["action"] == "promote"]
    aborted = [c for c in changes if c["action"] == "abort"]
    print(
        f"false-promotion soak: {seconds:.0f} s, {sent} events, {len(fitted)} candidates "
        f"fitted ({retrainer.rounds()} rounds here), published {published}, rejected "
        f"{dict(rejected)}, promoted {[c['version'] for c in promoted]}, aborted "
        f"{[c['aborted'] for c in aborted]}"
    )
    assert len(fitted) >= seconds / LOOP["retrain_interval_s"] / 2, "too few rounds to judge"
    assert promoted == [], "a version was promoted though the data never changed"
    assert registry.active_version() == "v1"
