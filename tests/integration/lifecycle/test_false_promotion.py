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
from worker.infra.clients import connect_redis
from worker.lifecycle.candidate_log import CandidateLog
from worker.models.registry import Registry
from worker.settings import Settings
from worker.tools.demo_drift import LOOP  # the loop as the drift demo runs it

pytestmark = [pytest.mark.integration, pytest.mark.soak, pytest.mark.usefixtures("labels_topic")]


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
    fitted = CandidateLog(connect_redis(settings), settings.registry_prefix).recent(1000)
    published = [c["candidate"] for c in fitted if c["outcome"] == "published"]
    rejected = Counter(c["why"] for c in fitted if c["outcome"] == "rejected")
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
