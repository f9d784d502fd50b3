"""`scorer bench --mode monitor`: can one `scorer monitor` keep up with one worker, and what
does a join window hold?

Each round, side by side: `scorer run` (logistic) scores the pre-filled input topic, its rate
taken as the throughput mode takes it; then that run's predictions and a label for each of
their events (another topic) are read by one `scorer monitor` from the beginning, in two
variants: every label there ("labels with their predictions") and half the labels not yet
sent ("half the labels still to come", the state of a monitor whose labels run far behind).
The monitor's rate is taken from its own counters in Redis (first record applied to the last),
so process start-up and the group join are not counted. Reported: labelled events/s (and
records/s), the ratio to the worker's rate in the same round, the monitor's peak RSS, and the
Redis memory an open join window holds per event (the join lives in Redis until
label_window_s has passed, so that, times the event rate times the window, is what a deployment
needs; the monitor's own memory does not grow with the label delay).
"""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid
from typing import Any

import numpy as np
import orjson
import redis

from worker.errors import ServiceUnavailable
from worker.infra.clients import build_producer, connect_redis
from worker.lifecycle.join import JoinStore
from worker.lifecycle.pairing import Pairing
from worker.tools.bench import Bench, prefill, run_worker
from worker.tools.proc_stats import tree_peak_rss_mb
from worker.tools.processes import stop_process

WORKER = "worker, logistic"
ALL_LABELS, HALF_LABELS = "labels with their predictions", "half the labels still to come"
LABEL_WINDOW_S = 3600  # longer than any run: every event's join stays open, as in a deployment


def run(bench: Bench) -> dict[str, Any]:
    events = bench.options.events
    input_topic = bench.topic("bench-in")
    prefill(bench, input_topic, events)
    worker_rates: list[float] = []
    runs: dict[str, list[dict[str, float]]] = {ALL_LABELS: [], HALF_LABELS: []}
    for _ in range(bench.options.rounds):
        output = bench.topic("bench-out")
        worker_rates.append(run_worker(bench, input_topic, "logistic", output=output).events_per_s)
        for variant, labelled in ((ALL_LABELS, events), (HALF_LABELS, events // 2)):
            labels_topic = bench.topic("bench-labels")
            send_labels(bench, labels_topic, labelled)
            runs[variant].append(_run_monitor(bench, output, labels_topic, events, labelled))
    return summarise(worker_rates, runs)


def send_labels(bench: Bench, topic: str, count: int) -> None:
    """A click (0 or 1) for each of the first `count` pre-filled events (ids b-0, b-1, ...)."""
    clicks = np.random.default_rng(7).random(count) < 0.3
    producer = build_producer(bench.settings.replace(linger_ms=20))
    try:
        for index, click in enumerate(clicks):
            label = {"event_id": f"b-{index}", "label": int(click), "ts": time.time()}
            producer.send(topic, orjson.dumps(label))
        producer.flush()
    finally:
        producer.close()


def _run_monitor(
    bench: Bench, output: str, labels_topic: str, predictions: int, labels: int
) -> dict[str, float]:
    """One `scorer monitor` over the output and labels topics, until Redis has every record."""
    client = connect_redis(bench.settings)
    prefix = f"bench-monitor-{uuid.uuid4().hex[:8]}"
    store = JoinStore(client, prefix, LABEL_WINDOW_S, bench.settings.quality_window)
    memory_before = int(client.info("memory")["used_memory"])
    process = bench.start(
        ["worker", "monitor"],
        f"monitor-{labels_topic}.log",
        output_topic=output,
        shadow_topic=f"{output}-shadow",
        labels_topic=labels_topic,
        monitor_group_id=f"m-{labels_topic}",
        registry_prefix=prefix,
        label_window_s=LABEL_WINDOW_S,
        metrics_port=0,
    )
    seconds, counts, peak_rss = time_applied(bench, process, store, predictions + labels)
    return {
        "labelled_events_per_s": counts["joined"] / seconds,
        "records_per_s": (predictions + labels) / seconds,
        "peak_rss_mb": peak_rss,
        "join_bytes_per_event": _join_bytes(client, store, memory_before) / predictions,
    }


def time_applied(
    bench: Bench, process: subprocess.Popen[bytes], store: Pairing, records: int
) -> tuple[float, dict[str, int], float]:
    """Wait until the process has applied `records` records to the join (its own counters in
    Redis, so start-up and the group join are not counted); then stop it. The seconds from its
    first record applied to the last, its counters, and its peak RSS."""
    first_at = last_at = 0.0
    deadline = time.monotonic() + 600
    try:
        while True:
            counts = store.stats()
            seen = counts.get(store.halves, 0) + counts.get("labels", 0)
            now = time.monotonic()
            if seen and not first_at:
                first_at = now
            if seen >= records:
                last_at = now
                break
            if process.poll() is not None or now > deadline:
                raise ServiceUnavailable(
                    f"bench: {records - seen} of {records} records not applied "
                    f"(exit code {process.returncode}); see {bench.work_dir}"
                )
            time.sleep(0.05)
        peak_rss = tree_peak_rss_mb(process.pid)
    finally:
        stop_process(process)
    return max(1e-3, last_at - first_at), counts, peak_rss


def _join_bytes(client: redis.Redis, store: JoinStore, memory_before: int) -> int:
    """Redis memory the run's open join windows take: all it added, less its quality window."""
    pairs = int(client.memory_usage(store.pairs_key("logistic", "primary")) or 0)
    return int(client.info("memory")["used_memory"]) - memory_before - pairs


def summarise(worker_rates: list[float], runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Medians over the rounds; each ratio is the median of the rounds' own ratios."""
    rows: dict[str, Any] = {WORKER: {"events_per_s": round(statistics.median(worker_rates))}}
    for variant, results in runs.items():
        rates = [r["labelled_events_per_s"] for r in results]
        rows[f"monitor, {variant}"] = {
            "labelled_events_per_s": round(statistics.median(rates)),
            "runs": [round(r) for r in rates],
            "records_per_s": round(statistics.median(r["records_per_s"] for r in results)),
            "ratio_to_worker": round(
                statistics.median(m / w for m, w in zip(rates, worker_rates, strict=True)), 3
            ),
            "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in results), 1),
            "join_bytes_per_event": round(
                statistics.median(r["join_bytes_per_event"] for r in results)
            ),
        }
    return {"rows": rows, "worker_runs": [round(r) for r in worker_rates]}


def render(result: dict[str, Any]) -> str:
    rows = result["rows"]
    lines = [
        f"{'':46}{'events/s':>10}{'records/s':>11}{'x worker':>10}{'peak RSS':>10}"
        f"{'join B/event':>14}",
        f"{WORKER:<46}{rows[WORKER]['events_per_s']:>10,}",
    ]
    for name, row in rows.items():
        if name != WORKER:
            lines.append(
                f"{name:<46}{row['labelled_events_per_s']:>10,}{row['records_per_s']:>11,}"
                f"{row['ratio_to_worker']:>10.2f}{row['peak_rss_mb']:>7.0f} MB"
                f"{row['join_bytes_per_event']:>14,}"
            )
    return "\n".join(lines)
