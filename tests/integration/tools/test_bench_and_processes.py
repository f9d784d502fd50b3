"""`scorer bench` end to end on a small scale, and `scorer run --processes N`."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from tests.conftest import TopicReader, run_scorer, send_events, wait_until
from worker.settings import Settings
from worker.tools.synthetic import feature_rows

pytestmark = pytest.mark.integration


def test_bench_measures_every_variant_and_writes_json_and_chart(tmp_path: Path) -> None:
    # the bench's own tooling on the quicker broker (the suite's delivery tests run on Kafka)
    done = run_scorer(
        None,
        *("bench", "--events", "2000", "--rounds", "1", "--broker", "tansu"),
        *("--out", str(tmp_path)),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = orjson.loads((tmp_path / "bench.json").read_bytes())
    rows = results["throughput"]["rows"]
    assert set(rows) == {
        "passthrough (ceiling)",
        "worker, logistic",
        "worker, logistic, exactly-once",
        "worker, forest",
        "tutorial, logistic",
    }
    assert all(row["events_per_s"] > 0 and row["peak_rss_mb"] > 0 for row in rows.values())
    assert rows["passthrough (ceiling)"]["ratio_to_ceiling"] == 1.0
    for row in rows.values():  # cores used while output flowed: the run's own, broker's, bench's
        assert set(row["cores"]) == {"contender", "broker", "bench"}
        assert all(0 <= cores <= (os.cpu_count() or 1) for cores in row["cores"].values())
    assert rows["tutorial, logistic"]["cores"]["contender"] > 0  # the slow one: a long window
    assert (tmp_path / "bench.png").stat().st_size > 10_000
    assert "x ceiling" in done.stdout


def test_bench_latency_mode_reports_both_paths_over_its_rounds(tmp_path: Path) -> None:
    done = run_scorer(
        None,
        *("bench", "--mode", "latency", "--rate", "300", "--duration", "3", "--rounds", "2"),
        *("--broker", "tansu", "--out", str(tmp_path)),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    latency = orjson.loads((tmp_path / "bench.json").read_bytes())["latency"]
    assert latency["offered_rate"] == 300 and latency["rounds"] == 2
    assert len(latency["added_p99_ms_each"]) == 2
    for path in ("broker_only_ms", "worker_ms"):
        assert 0 < latency[path]["p50"] <= latency[path]["p95"] <= latency[path]["p99"]
    # a prediction crosses the broker after its event did: it cannot arrive sooner
    assert latency["worker_ms"]["p50"] > latency["broker_only_ms"]["p50"]
    assert len(latency["worker_cdf_ms"]) == 101


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_processes_share_the_group_restart_a_crashed_child_and_stop_cleanly(
    settings: Settings,
    publish: Any,
    logistic: Any,
    producer: KafkaProducer,
    reader: TopicReader,
    process_factory: Any,
) -> None:
    publish(logistic, "v1")
    supervisor = process_factory(settings, "run", "--processes", "2")
    wait_until(lambda: len(children_of(supervisor.pid)) == 2, what="two worker processes")
    first = send_events(producer, settings.input_topic, feature_rows(500, seed=1), "a")
    wait_until(lambda: set(first) <= reader.scored_ids(), what="scored by the pair")

    victim = children_of(supervisor.pid)[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: len(children_of(supervisor.pid)) == 2 and victim not in children_of(supervisor.pid),
        what="the crashed child replaced",
    )
    later = send_events(producer, settings.input_topic, feature_rows(500, seed=2), "b")
    wait_until(
        lambda: set(later) <= reader.scored_ids(), timeout=60, what="scoring after the restart"
    )

    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(60) == 0, supervisor.log_path.read_text()[-4000:]


def test_processes_that_keep_crashing_make_the_supervisor_give_up(
    settings: Settings, process_factory: Any
) -> None:
    broken = settings.replace(kafka_bootstrap="127.0.0.1:1", startup_timeout_s=0.5)
    started = time.monotonic()
    supervisor = process_factory(broken, "run", "--processes", "2")
    assert supervisor.wait(120) == 7
    assert time.monotonic() - started < 120
