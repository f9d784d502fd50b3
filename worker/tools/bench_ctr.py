"""`scorer bench --mode ctr`: the CTR Pipelines of ctr.py on CTR events (13 counts and 26
hashed categories, with missing values), side by side.

Reported: the worker's throughput with Pipeline (a) (one-hot + logistic regression) and (b)
(ordinal + histogram gradient boosting), each as joblib and as ONNX (scored by onnxruntime from
string tensors), beside the passthrough ceiling and a hand-written batched loop that builds a
DataFrame and calls predict_proba (baselines.py `dataframe`), interleaved over the rounds (each
ratio the median of the rounds' own); and, in this process with no Kafka, what each step costs
per event: decoding a 39-field mixed event beside today's 20-number one, and scoring through
the column plan (plan.py), the ONNX graph, and scikit-learn's own Pipeline on a DataFrame.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib

from worker.infra.clients import connect_redis
from worker.models.features import FeatureSchema
from worker.models.holder import load_version
from worker.models.publishing import Format, publish_estimator
from worker.models.registry import Registry
from worker.models.scoring import ScoreFn, score_function
from worker.stream.events import Limits, decode_batch
from worker.tools import ctr
from worker.tools.bench import (
    Bench,
    RunResult,
    per_event_us,
    prefill,
    ratio_rows,
    run_baseline,
    run_passthrough,
    run_worker,
)
from worker.tools.synthetic import FEATURES, event_bytes, feature_rows

CEILING = "passthrough (ceiling)"
HANDWRITTEN = "hand-written DataFrame loop, ctr-onehot"
MODELS = ("ctr-onehot", "ctr-hgb")
ONNX = "-onnx"  # the version name of a Pipeline's ONNX form
_BATCH = 1000


def run(bench: Bench) -> dict[str, Any]:
    models = _publish(bench)
    input_topic = bench.topic("bench-in")
    prefill(bench, input_topic, bench.options.events, profile="ctr")
    variants: dict[str, Callable[[], RunResult]] = {
        CEILING: lambda: run_passthrough(bench, input_topic)
    }
    for name in (*MODELS, *(name + ONNX for name in MODELS)):
        variants[f"worker, {name}"] = _worker(bench, input_topic, name)
    variants[HANDWRITTEN] = lambda: run_baseline(
        bench, input_topic, "dataframe", bench.options.events, models["ctr-onehot"][1]
    )
    runs: dict[str, list[RunResult]] = {name: [] for name in variants}
    for _ in range(bench.options.rounds):
        for name, measure in variants.items():
            runs[name].append(measure())
    rows = ratio_rows(runs, {"ceiling": CEILING, "handwritten": HANDWRITTEN})
    onnx = {name: _onnx_score(bench, name + ONNX) for name in MODELS}
    return {"rows": rows, "per_event_us": costs({n: m for n, (m, _) in models.items()}, onnx)}


def _worker(bench: Bench, input_topic: str, version: str) -> Callable[[], RunResult]:
    return lambda: run_worker(bench, input_topic, version)


def _publish(bench: Bench) -> dict[str, tuple[Any, Path]]:
    """Each Pipeline fitted on 20,000 CTR rows and published through the ordinary publish
    path (kinds learnt, probe rows scored), as joblib and as ONNX, if not there yet."""
    registry = _registry(bench)
    existing = {entry.version for entry in registry.versions()}
    models = {}
    for name in MODELS:
        model = ctr.train_ctr(name, n=20_000, seed=1)
        path = bench.work_dir / f"{name}.joblib"
        joblib.dump(model, path)
        models[name] = (model, path)
        forms: tuple[tuple[str, Format], ...] = ((name, "joblib"), (name + ONNX, "onnx"))
        for version, fmt in forms:
            if version not in existing:
                publish_estimator(
                    registry,
                    path.read_bytes(),
                    model,
                    version,
                    features=None,
                    note="bench",
                    signing_key="",
                    fmt=fmt,
                )
    return models


def _registry(bench: Bench) -> Registry:
    return Registry(connect_redis(bench.settings), "bench", "bench:active")


def _onnx_score(bench: Bench, version: str) -> ScoreFn:
    """The ONNX version's score function as a worker loads it (no pickle)."""
    return load_version(_registry(bench), version, bench.settings).score


def costs(models: dict[str, Any], onnx: dict[str, ScoreFn]) -> dict[str, float]:
    """µs per event in this process, each the median over interleaved rounds: decoding (a
    39-field CTR event, a 20-number one) and scoring (the worker's score function, with its
    column plan; the ONNX graph; and the Pipeline on a DataFrame of the same rows)."""
    frame = ctr.ctr_frame(_BATCH, seed=9)
    mixed = [ctr.ctr_event_bytes(f"e-{i}", f) for i, f in enumerate(ctr.event_features(frame))]
    numbers = [event_bytes(f"e-{i}", row) for i, row in enumerate(feature_rows(_BATCH))]
    kinds = ("number",) * len(ctr.COUNTS) + ("category",) * len(ctr.CATEGORIES)
    schema = FeatureSchema(ctr.FEATURES, kinds, True, "frame")  # type: ignore[arg-type]
    limits = Limits(1_000_000)
    decoded = decode_batch(mixed, schema, limits)
    timed: dict[str, Callable[[], object]] = {
        "decode, 39-field CTR event": lambda: decode_batch(mixed, schema, limits),
        "decode, 20 numbers": lambda: decode_batch(
            numbers, FeatureSchema.numbers(FEATURES), limits
        ),
    }
    for name, model in models.items():
        timed[f"score {name}, column plan"] = _call(
            score_function(model, "classifier", schema), decoded.matrix
        )
        timed[f"score {name}, ONNX"] = _call(onnx[name], decoded.matrix)
        timed[f"score {name}, scikit-learn on a DataFrame"] = _call(
            model.predict_proba, schema.frame(decoded.matrix)
        )
    return per_event_us(timed, _BATCH)


def _call(function: Callable[[Any], object], argument: Any) -> Callable[[], object]:
    return lambda: function(argument)


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{'':42}{'events/s':>10}{'x ceiling':>11}{'x hand-written':>16}{'peak RSS':>10}",
        *(
            f"{name:<42}{row['events_per_s']:>10,}{row['ratio_to_ceiling']:>11.2f}"
            f"{row['ratio_to_handwritten']:>16.2f}{row['peak_rss_mb']:>7.0f} MB"
            for name, row in result["rows"].items()
        ),
        "",
        "per event, in this process (µs)",
        *(f"  {name:<52}{us:>8.2f}" for name, us in result["per_event_us"].items()),
    ]
    return "\n".join(lines)
