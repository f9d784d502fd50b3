"""Guards that need no labels, on the real broker and Redis: a canary that fails to score its
rows, and one whose live inputs drifted from the reference profile published with it (PSI
per feature from the workers' bin counts). A version without a reference says so."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import joblib
import orjson
import pytest
from kafka import KafkaProducer

from tests.conftest import artifact_bytes, run_scorer, send_events, wait_until
from tests.integration.lifecycle.conftest import guard_changes
from tests.integration.stream.test_scoring import RaisesOnLargeFirstFeature
from worker.models.registry import Registry
from worker.settings import Settings
from worker.tools import ctr
from worker.tools.synthetic import FEATURES, feature_rows

pytestmark = pytest.mark.integration

LIVE_GUARDED = {"guard_min_labels": 100, "quality_interval_s": 0.5}


def test_a_canary_that_fails_on_its_rows_is_aborted_without_a_label(
    settings: Settings,
    publish: Any,
    logistic: Any,
    registry: Registry,
    producer: KafkaProducer,
    worker_factory: Any,
    monitor_factory: Any,
) -> None:
    """One row in ten makes the canary raise (scoring_failed): its error rate over its newest
    guard_min_labels rows passes guard_max_error_rate, and it is aborted with no label sent."""
    settings = settings.replace(**LIVE_GUARDED, guard_max_error_rate=0.05)
    publish(logistic, "v1")
    publish(RaisesOnLargeFirstFeature(), "picky", activate=False)
    registry.set_canary("picky", 50, by="test")
    worker_factory(settings)
    monitor_factory(settings)
    rows = feature_rows(1000, seed=5)
    rows[::10, 0] = 1e6
    send_events(producer, settings.input_topic, rows)

    wait_until(lambda: registry.route().empty, timeout=60, what="the failing canary aborted")
    [abort] = guard_changes(registry, "abort")
    assert "guard_max_error_rate" in abort["reason"]
    errors = abort["figures"]["errors"]
    assert errors["rows"] >= 100 and 0.05 < errors["error_rate"] < 0.2
    assert abort["figures"]["labelled"] == 0


def test_drift_is_measured_against_the_reference_and_a_drifted_canary_is_aborted(
    settings: Settings,
    publish: Any,
    logistic: Any,
    registry: Registry,
    producer: KafkaProducer,
    worker_factory: Any,
    monitor_factory: Any,
    tmp_path: Path,
) -> None:
    """v2 is published through the CLI with a reference file; live events have f3 shifted by
    two standard deviations. The monitor's PSI of f3 passes guard_max_psi and v2 is aborted;
    `scorer quality --json` shows f3 (and only f3) drifted, and no drift figures for v1,
    which has no reference profile."""
    settings = settings.replace(**LIVE_GUARDED, guard_max_psi=0.25)
    publish(logistic, "v1")
    reference = tmp_path / "training.csv"
    with reference.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", *reversed(FEATURES)])  # any column order, extra columns
        writer.writerows([0, *reversed(row)] for row in feature_rows(2000, seed=1).tolist())
    model_file = tmp_path / "v2.joblib"
    model_file.write_bytes(artifact_bytes(logistic, tmp_path))
    published = run_scorer(
        settings, "model", "publish", str(model_file), "--version", "v2",
        "--features", ",".join(FEATURES), "--reference", str(reference),
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    assert "reference profile from 2000 rows" in published.stdout
    registry.set_canary("v2", 50, by="test")
    worker_factory(settings)
    monitor_factory(settings)
    rows = feature_rows(2000, seed=9)
    rows[:, 3] += 2.0
    send_events(producer, settings.input_topic, rows)

    wait_until(lambda: registry.route().empty, timeout=60, what="the drifted canary aborted")
    [abort] = guard_changes(registry, "abort")
    assert "guard_max_psi" in abort["reason"] and "f3" in abort["reason"]
    report = orjson.loads(run_scorer(settings, "quality", "--json").stdout)
    drift = report["versions"]["v2"]["drift"]
    assert drift["reference"] and drift["rows"] >= 100
    assert next(iter(drift["features"])) == "f3" and drift["features"]["f3"] > 0.25
    assert max(v for name, v in drift["features"].items() if name != "f3") < 0.1
    assert drift["score_psi"] is not None
    assert report["versions"]["v1"]["drift"]["reference"] is False


def test_a_category_features_drift_is_measured_over_its_top_categories_and_missing(
    settings: Settings,
    scorer_main: Any,
    registry: Registry,
    producer: KafkaProducer,
    worker_factory: Any,
    monitor_factory: Any,
    tmp_path: Path,
) -> None:
    """Pipeline (b) published with a CTR reference file (empty cells missing); live events'
    C1 takes one value it never had in training: its PSI (top categories, other, missing)
    passes guard_max_psi and the canary is aborted naming C1, while the counts stay still."""
    settings = settings.replace(**LIVE_GUARDED, guard_max_psi=0.25)
    frame = ctr.ctr_frame(3000, seed=41)
    model = tmp_path / "hgb.joblib"
    joblib.dump(ctr.hgb_pipeline().fit(frame, ctr.clicks(frame, seed=41)), model)
    reference = tmp_path / "training.csv"
    frame.to_csv(reference, index=False)  # a missing value is an empty cell
    for version in ("v1", "v2"):
        args = ["--reference", str(reference)] if version == "v2" else ["--activate"]
        published = scorer_main(
            settings, "model", "publish", str(model), "--version", version, *args
        )
        assert published.returncode == 0, published.stderr
    assert "reference profile from 3000 rows" in published.stdout
    registry.set_canary("v2", 50, by="test")
    worker_factory(settings)
    monitor_factory(settings)
    live = ctr.event_features(ctr.ctr_frame(1500, seed=42))
    for i, features in enumerate(live):
        features["C1"] = "a-new-campaign"
        producer.send(
            settings.input_topic,
            key=f"e-{i}".encode(),
            value=ctr.ctr_event_bytes(f"e-{i}", features),
        )
    producer.flush()

    wait_until(lambda: registry.route().empty, timeout=60, what="the drifted canary aborted")
    [abort] = guard_changes(registry, "abort")
    assert "guard_max_psi" in abort["reason"] and "C1" in abort["reason"]
    report = orjson.loads(run_scorer(settings, "quality", "--json").stdout)
    drift = report["versions"]["v2"]["drift"]
    assert next(iter(drift["features"])) == "C1" and drift["features"]["C1"] > 1
    assert max(drift["features"][name] for name in ctr.COUNTS) < 0.1
