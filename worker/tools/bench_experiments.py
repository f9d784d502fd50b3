"""`scorer bench --mode experiments`: what a canary and a shadow version cost the stream.

The throughput test's pre-filled topic, through the worker with the logistic model alone, with
a 10 % canary, and with the canary and one shadow version, side by side in each round (the
canary and the shadow are copies of the primary under other names, so what is measured is the
routing and the extra work, not a slower model). Reported: each variant's median rate, its
ratio to the primary alone (the median of each round's own ratio) and the shadow's cost per
event from the two rates. Runs on a shared 2-core machine differ by 10-20 %, more than a
canary costs, so the scoring step is also timed in this process, where nothing else runs:
`score_batch` on the same 1,000-event batch with each of the three routes, and with the
primary carrying a reference profile (the 10th percentile of 500 calls), giving what the
canary, the shadow and the drift counts add per event.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import joblib
import numpy as np

from worker.infra.clients import connect_redis
from worker.models.artifacts import inspect_estimator
from worker.models.features import FeatureSchema
from worker.models.holder import LoadedModel, Serving
from worker.models.profile import build_profile
from worker.models.registry import Registry
from worker.models.route import Canary, Route
from worker.models.scoring import score_function
from worker.stream.events import Limits
from worker.stream.scoring import score_batch
from worker.tools.bench import Bench, RunResult, prefill, run_passthrough, run_worker
from worker.tools.synthetic import FEATURES, event_bytes, feature_rows

CANARY, SHADOW = "logistic-canary", "logistic-shadow"
CANARY_PERCENT = 10.0
ALONE, WITH_CANARY, WITH_SHADOW = "primary alone", "10 % canary", "10 % canary + 1 shadow"
WITH_PROFILE = "primary alone, reference profile"  # drift: its rows' bins counted per batch
CEILING = "passthrough (ceiling)"


def run(bench: Bench) -> dict[str, Any]:
    _publish_copies(bench)
    input_topic = bench.topic("bench-in")
    prefill(bench, input_topic, bench.options.events)
    variants: dict[str, Callable[[], RunResult]] = {
        CEILING: lambda: run_passthrough(bench, input_topic),
        ALONE: lambda: run_worker(bench, input_topic, "logistic"),
        WITH_CANARY: lambda: run_worker(
            bench, input_topic, "logistic", route=Route(Canary(CANARY, CANARY_PERCENT))
        ),
        WITH_SHADOW: lambda: run_worker(
            bench,
            input_topic,
            "logistic",
            route=Route(Canary(CANARY, CANARY_PERCENT), (SHADOW,)),
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(bench.options.rounds):
        for name, run in variants.items():
            rates[name].append(run().events_per_s)
    return summarise(rates, scoring_us(bench))


def summarise(rates: dict[str, list[float]], scoring: dict[str, float]) -> dict[str, Any]:
    """Medians over the rounds; ratios and the shadow's cost from each round's own pair."""
    rows = {
        name: {
            "events_per_s": round(statistics.median(runs)),
            "runs": [round(r) for r in runs],
            "ratio_to_primary_alone": round(
                statistics.median(r / a for r, a in zip(runs, rates[ALONE], strict=True)), 3
            ),
        }
        for name, runs in rates.items()
    }
    shadow_us = statistics.median(
        (1 / s - 1 / c) * 1e6 for s, c in zip(rates[WITH_SHADOW], rates[WITH_CANARY], strict=True)
    )
    canary_ratio = statistics.median(
        c / a for c, a in zip(rates[WITH_CANARY], rates[ALONE], strict=True)
    )
    event_us = 1e6 / statistics.median(rates[ALONE])
    canary_us = scoring[WITH_CANARY] - scoring[ALONE]
    drift_us = scoring[WITH_PROFILE] - scoring[ALONE]
    return {
        "rows": rows,
        "canary_cost": round(1 - canary_ratio, 3),
        "shadow_cost_us_per_event": round(shadow_us, 2),
        "scoring_us_per_event": {name: round(us, 2) for name, us in scoring.items()},
        "canary_scoring_us_per_event": round(canary_us, 2),
        "canary_scoring_share_of_event_time": round(canary_us / event_us, 3),
        "shadow_scoring_us_per_event": round(scoring[WITH_SHADOW] - scoring[WITH_CANARY], 2),
        "drift_scoring_us_per_event": round(drift_us, 2),
        "drift_scoring_share_of_event_time": round(drift_us / event_us, 3),
    }


def scoring_us(bench: Bench, rows: int = 1000, calls: int = 500) -> dict[str, float]:
    """`score_batch` per event with each route, in this process: decode, arms, predict calls,
    encode (the 10th percentile of `calls`, the least disturbed by the machine)."""
    score = score_function(joblib.load(bench.model_paths["logistic"]), "classifier")

    def loaded(version: str) -> LoadedModel:
        return LoadedModel(version, "", FeatureSchema.numbers(FEATURES), "classifier", score)

    primary, canary, shadow = loaded("logistic"), loaded(CANARY), loaded(SHADOW)
    reference = feature_rows(2000, seed=1)
    profile = build_profile(reference, FEATURES, score(reference))
    servings = {
        ALONE: Serving(primary),
        WITH_PROFILE: Serving(dataclasses.replace(primary, profile=profile)),
        WITH_CANARY: Serving(primary, canary, route=Route(Canary(CANARY, CANARY_PERCENT))),
        WITH_SHADOW: Serving(
            primary, canary, (shadow,), Route(Canary(CANARY, CANARY_PERCENT), (SHADOW,))
        ),
    }
    values = [event_bytes(f"b-{i}", row) for i, row in enumerate(feature_rows(rows, seed=3))]
    keys = [f"b-{i}".encode() for i in range(rows)]
    timings: dict[str, list[float]] = {name: [] for name in servings}
    for _ in range(calls):  # interleaved, so a slow moment hits every route alike
        for name, serving in servings.items():
            started = time.perf_counter()
            score_batch(values, keys, serving, Limits(1_000_000))
            timings[name].append(time.perf_counter() - started)
    return {name: float(np.percentile(t, 10)) / rows * 1e6 for name, t in timings.items()}


def render(result: dict[str, Any]) -> str:
    lines = [f"{'':28}{'events/s':>10}{'/ alone':>10}"]
    for name, row in result["rows"].items():
        lines.append(f"{name:<28}{row['events_per_s']:>10,}{row['ratio_to_primary_alone']:>10.3f}")
    lines += [
        f"canary cost: {result['canary_cost']:.1%} of the primary alone's throughput; in the "
        f"scoring step {result['canary_scoring_us_per_event']} µs per event, "
        f"{result['canary_scoring_share_of_event_time']:.1%} of an event's time in the worker",
        f"shadow cost: {result['shadow_cost_us_per_event']} µs per event from the rates; in "
        f"the scoring step (predict and encode) {result['shadow_scoring_us_per_event']} µs",
        f"drift counts (a reference profile, 20 features): {result['drift_scoring_us_per_event']}"
        f" µs per event in the scoring step, {result['drift_scoring_share_of_event_time']:.1%} "
        "of an event's time in the worker",
    ]
    return "\n".join(lines)


def _publish_copies(bench: Bench) -> None:
    """The canary and the shadow: the logistic artifact again, under other names."""
    registry = Registry(connect_redis(bench.settings), "bench", "bench:active")
    data = bench.model_paths["logistic"].read_bytes()
    info = inspect_estimator(joblib.load(bench.model_paths["logistic"]), FEATURES)
    known = {entry.version for entry in registry.versions()}
    for version in (CANARY, SHADOW):
        if version not in known:
            registry.publish(data, version, info)
