"""`scorer bench --mode retrain`: does one `scorer retrain` keep up with one worker while it
fits, and does its memory stay bounded by its window?

Each round, side by side: `scorer run` (logistic) scores the pre-filled input topic, its rate
taken as the throughput mode takes it; then one `scorer retrain` reads the same events and a
click for each (another topic) from the beginning, with a round due every second
(retrain_min_rows 2,000), so it fits candidate after candidate while it joins: with the
logistic regression active and a window of 10,000 rows, of 40,000, and of 10,000 joining a
20 % sample of the events (retrain_sample_percent); and with a 100-tree random forest active
(a fit of seconds beside the join), window 10,000. Its rate, the events it read a second, is
taken from its own counters in Redis (first record applied to the last), so start-up and the
group join are not counted. Reported: that rate, its ratio to the worker's in the same round,
the fits made meanwhile and their median time, and its peak RSS. The clicks are random, so
every candidate is rejected (not_better) and the next round is due at once.
"""

from __future__ import annotations

import statistics
import uuid
from typing import Any

import joblib

from worker.infra.clients import connect_redis
from worker.lifecycle.candidate_log import CandidateLog
from worker.lifecycle.records import sampled
from worker.lifecycle.training_rows import TrainingStore
from worker.models.artifacts import inspect_estimator
from worker.models.registry import Registry
from worker.tools.bench import Bench, prefill, run_worker
from worker.tools.bench_monitor import send_labels, time_applied
from worker.tools.synthetic import FEATURES

WORKER = "worker, logistic"
# (active model, window rows, sample percent): the window's effect on memory, a sample's on
# the rate, and a fit that takes seconds (a 100-tree forest) beside the join
VARIANTS = (
    ("logistic", 10_000, 100.0),
    ("logistic", 40_000, 100.0),
    ("logistic", 10_000, 20.0),
    ("forest", 10_000, 100.0),
)
LABEL_WINDOW_S = 3600  # longer than any run: no join window closes during it


def run(bench: Bench) -> dict[str, Any]:
    events = bench.options.events
    input_topic = bench.topic("bench-in")
    prefill(bench, input_topic, events)
    labels_topic = bench.topic("bench-labels")
    send_labels(bench, labels_topic, events)
    worker_rates: list[float] = []
    runs: dict[tuple[str, int, float], list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(bench.options.rounds):
        worker_rates.append(run_worker(bench, input_topic, "logistic").events_per_s)
        for variant in VARIANTS:
            runs[variant].append(
                _run_retrainer(bench, (input_topic, labels_topic), events, variant)
            )
    return summarise(worker_rates, runs)


def _run_retrainer(
    bench: Bench, topics: tuple[str, str], events: int, variant: tuple[str, int, float]
) -> dict[str, float]:
    """One `scorer retrain` over the input and labels topics, until Redis has every record of
    its sample. Its rate: the events it read (all of them) a second."""
    input_topic, labels_topic = topics
    model, window, percent = variant
    client = connect_redis(bench.settings)
    prefix = f"bench-retrain-{uuid.uuid4().hex[:8]}"
    registry = Registry(client, prefix, f"{prefix}:active")
    path = bench.model_paths[model]
    registry.publish(path.read_bytes(), model, inspect_estimator(joblib.load(path), FEATURES))
    registry.activate(model)
    store = TrainingStore(client, prefix, LABEL_WINDOW_S, window)
    process = bench.start(
        ["worker", "retrain"],
        f"retrain-{prefix}.log",
        input_topic=input_topic,
        labels_topic=labels_topic,
        retrain_group_id=f"r-{prefix}",
        registry_prefix=prefix,
        active_key=f"{prefix}:active",
        label_window_s=LABEL_WINDOW_S,
        retrain_window_rows=window,
        retrain_sample_percent=percent,
        retrain_min_rows=2000,
        retrain_interval_s=1.0,
        quality_interval_s=1.0,
        metrics_port=0,
    )
    kept = sum(sampled(f"b-{i}", percent) for i in range(events))
    seconds, _, peak_rss = time_applied(bench, process, store, 2 * kept)
    fits = [
        float(record["training"]["fit_s"])
        for record in CandidateLog(client, prefix).recent(1000)
        if "fit_s" in record.get("training", {})
    ]
    return {
        "events_per_s": events / seconds,
        "fits": len(fits),
        "fit_s": statistics.median(fits) if fits else 0.0,
        "peak_rss_mb": peak_rss,
    }


def summarise(
    worker_rates: list[float], runs: dict[tuple[str, int, float], list[dict[str, float]]]
) -> dict[str, Any]:
    """Medians over the rounds; each ratio is the median of the rounds' own ratios."""
    rows: dict[str, Any] = {WORKER: {"events_per_s": round(statistics.median(worker_rates))}}
    for (model, window, percent), results in runs.items():
        rates = [r["events_per_s"] for r in results]
        sample = "" if percent >= 100 else f", {percent:g} % sample"
        rows[f"retrainer, {model}, window {window:,}{sample}"] = {
            "events_per_s": round(statistics.median(rates)),
            "runs": [round(r) for r in rates],
            "ratio_to_worker": round(
                statistics.median(m / w for m, w in zip(rates, worker_rates, strict=True)), 3
            ),
            "fits": [int(r["fits"]) for r in results],
            "fit_s": round(statistics.median(r["fit_s"] for r in results), 2),
            "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in results), 1),
        }
    return {"rows": rows, "worker_runs": [round(r) for r in worker_rates]}


def render(result: dict[str, Any]) -> str:
    rows = result["rows"]
    lines = [
        f"{'':50}{'events/s':>10}{'x worker':>10}{'fits':>12}{'fit s':>8}{'peak RSS':>10}",
        f"{WORKER:<50}{rows[WORKER]['events_per_s']:>10,}",
    ]
    for name, row in rows.items():
        if name != WORKER:
            fits = "/".join(str(n) for n in row["fits"])
            lines.append(
                f"{name:<50}{row['events_per_s']:>10,}{row['ratio_to_worker']:>10.2f}"
                f"{fits:>12}{row['fit_s']:>8.2f}{row['peak_rss_mb']:>7.0f} MB"
            )
    return "\n".join(lines)
