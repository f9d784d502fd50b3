"""`scorer bench --mode compiled`: the same models as joblib and as ONNX, side by side.

A 100-tree depth-8 random forest, a 100-stage gradient boosting and the logistic regression,
each published as joblib, as ONNX only, and stored both ways with the runtime publish found
faster. Reported per model kind: the pure scoring cost per event of each runtime (measured
at publish: batches of 1,000 rows, one thread, no Kafka), the largest score difference on
the probe rows, and the worker's throughput with each version over the pre-filled topic
beside the passthrough ceiling, interleaved over the rounds (ratios per round, then the
median). The ONNX-only forest also runs with `allow_pickle = false`, whose worker never
imports scikit-learn or joblib: its peak RSS beside the joblib worker's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from worker.infra.clients import connect_redis
from worker.models.artifacts import inspect_estimator
from worker.models.compiled import Runtime, compile_estimator
from worker.models.features import FeatureSchema
from worker.models.fidelity_rows import probe_rows
from worker.models.registry import Registry
from worker.tools.bench import (
    Bench,
    RunResult,
    prefill,
    ratio_rows,
    run_passthrough,
    run_worker,
)
from worker.tools.synthetic import FEATURES, click_labels, feature_rows

CEILING = "passthrough (ceiling)"
KINDS: dict[str, Callable[[], Any]] = {
    "forest": lambda: RandomForestClassifier(
        n_estimators=100, max_depth=8, n_jobs=1, random_state=1
    ),
    "gbm": lambda: GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=1),
    "logistic": lambda: LogisticRegression(max_iter=500),
}
FORMATS = ("joblib", "onnx", "both")
PICKLE_FREE = "forest, onnx, allow_pickle false"


def run(bench: Bench) -> dict[str, Any]:
    costs = _publish_every_format(bench)
    input_topic = bench.topic("bench-in")
    prefill(bench, input_topic, bench.options.events)
    variants: dict[str, Callable[[], RunResult]] = {
        CEILING: lambda: run_passthrough(bench, input_topic)
    }
    for kind in KINDS:
        for form in FORMATS:
            variants[f"{kind}, {form}"] = _worker(bench, input_topic, f"c-{kind}-{form}")
    variants[PICKLE_FREE] = _worker(bench, input_topic, "c-forest-onnx", allow_pickle=False)
    runs: dict[str, list[RunResult]] = {name: [] for name in variants}
    for _ in range(bench.options.rounds):
        for name, run in variants.items():
            runs[name].append(run())
    return summarise(runs, costs)


def _worker(
    bench: Bench, input_topic: str, version: str, allow_pickle: bool = True
) -> Callable[[], RunResult]:
    return lambda: run_worker(bench, input_topic, version, allow_pickle=allow_pickle)


def _publish_every_format(bench: Bench) -> dict[str, dict[str, Any]]:
    """Each kind as c-<kind>-joblib, -onnx and -both (if not there yet); what publish
    measured, per kind."""
    registry = Registry(connect_redis(bench.settings), "bench", "bench:active")
    rows = feature_rows(4000, seed=1)
    clicks = click_labels(rows, seed=1)
    costs = {}
    existing = {entry.version for entry in registry.versions()}
    for kind, make in KINDS.items():
        model = make().fit(rows, clicks)
        info = inspect_estimator(model, FEATURES)
        compiled = compile_estimator(
            model, info, probe_rows(model, FeatureSchema.numbers(FEATURES), None), 1e-5
        )
        costs[kind] = {
            "joblib_us": round(compiled.joblib_us, 3),
            "onnx_us": round(compiled.onnx_us, 3),
            "max_difference": compiled.max_difference,
            "publish_chose": compiled.faster,
        }
        data = _joblib_bytes(model)
        stored: dict[str, tuple[bytes | None, Runtime, bool]] = {
            "joblib": (data, "joblib", False),
            "onnx": (None, "onnx", True),
            "both": (data, compiled.faster, True),
        }
        for form, (artifact, runtime, with_onnx) in stored.items():
            version = f"c-{kind}-{form}"
            if version not in existing:
                registry.publish(
                    artifact,
                    version,
                    info,
                    compiled=compiled if with_onnx else None,
                    runtime=runtime,
                )
    return costs


def _joblib_bytes(model: Any) -> bytes:
    import io

    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def summarise(runs: dict[str, list[RunResult]], costs: dict[str, Any]) -> dict[str, Any]:
    return {"rows": ratio_rows(runs, {"ceiling": CEILING}), "scoring": costs}


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{'':36}{'events/s':>10}{'x ceiling':>11}{'peak RSS':>10}",
        *(
            f"{name:<36}{row['events_per_s']:>10,}{row['ratio_to_ceiling']:>11.2f}"
            f"{row['peak_rss_mb']:>7.0f} MB"
            for name, row in result["rows"].items()
        ),
        "",
        f"{'scoring only, µs/event':<24}{'joblib':>9}{'onnx':>9}{'publish':>9}{'max diff':>11}",
        *(
            f"{kind:<24}{cost['joblib_us']:>9.3f}{cost['onnx_us']:>9.3f}"
            f"{cost['publish_chose']:>9}{cost['max_difference']:>11.1e}"
            for kind, cost in result["scoring"].items()
        ),
    ]
    return "\n".join(lines)
