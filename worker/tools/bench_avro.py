"""`scorer bench --mode avro`: the worker on schema-registry records (Avro in the Confluent
wire format) beside the same worker on the same events as JSON, each beside its own topic's
passthrough ceiling, interleaved over the rounds (each ratio the median of the rounds' own);
and, in this process with no Kafka, what decoding costs per event in each format.

The registry is the embedded Apicurio, started here (with --external: the settings'
schema_registry_url).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from worker.infra.schema_registry import SchemaRegistry
from worker.models.features import FeatureSchema
from worker.stream.events import Limits, decode_batch
from worker.stream.records import RegistryEvents
from worker.tools.avro_events import avro_encoder
from worker.tools.bench import (
    Bench,
    RunResult,
    per_event_us,
    prefill,
    ratio_rows,
    run_passthrough,
    run_worker,
)
from worker.tools.loadgen import generate
from worker.tools.stack import free_port, start_schema_registry
from worker.tools.synthetic import FEATURES, event_bytes, feature_rows

JSON_WORKER = "worker, logistic, JSON"
AVRO_WORKER = "worker, logistic, Avro"
JSON_CEILING = "passthrough, JSON topic"
AVRO_CEILING = "passthrough, Avro topic"
_BATCH = 1000


def run(bench: Bench) -> dict[str, Any]:
    with _registry(bench) as url:
        registry = SchemaRegistry(url)
        json_topic, avro_topic = bench.topic("bench-json"), bench.topic("bench-avro")
        prefill(bench, json_topic, bench.options.events)
        _prefill_avro(bench, avro_topic, registry)
        variants: dict[str, Callable[[], RunResult]] = {
            JSON_CEILING: lambda: run_passthrough(bench, json_topic),
            AVRO_CEILING: lambda: run_passthrough(bench, avro_topic),
            JSON_WORKER: lambda: run_worker(bench, json_topic, "logistic"),
            AVRO_WORKER: lambda: run_worker(
                bench, avro_topic, "logistic", input_format="avro", schema_registry_url=url
            ),
        }
        runs: dict[str, list[RunResult]] = {name: [] for name in variants}
        for _ in range(bench.options.rounds):
            for name, measure in variants.items():
                runs[name].append(measure())
        return {"rows": summarise(runs), "per_event_us": decode_costs(registry)}


def summarise(runs: dict[str, list[RunResult]]) -> dict[str, Any]:
    """Each run's medians and ratios (to the JSON worker, to its own topic's ceiling), each
    ratio the median of the rounds' own."""
    rows = ratio_rows(runs, {"json_worker": JSON_WORKER, "own_ceiling": JSON_CEILING})
    for name, ceiling in ((AVRO_WORKER, AVRO_CEILING), (AVRO_CEILING, AVRO_CEILING)):
        rows[name]["ratio_to_own_ceiling"] = round(
            statistics.median(
                run.events_per_s / top.events_per_s
                for run, top in zip(runs[name], runs[ceiling], strict=True)
            ),
            3,
        )
    return rows


@contextmanager
def _registry(bench: Bench) -> Iterator[str]:
    """The schema registry's API: the settings' (external), else one started here."""
    if bench.options.external:
        yield bench.settings.schema_registry_url
        return
    process, url = start_schema_registry(free_port(), bench.work_dir)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(30)


def _prefill_avro(bench: Bench, topic: str, registry: SchemaRegistry) -> None:
    from worker.infra.clients import build_producer

    producer = build_producer(bench.settings.replace(linger_ms=20))
    try:
        avro = avro_encoder(registry, topic, "ads")
        generate(producer, topic, bench.options.events, id_prefix="b", progress=True, avro=avro)
    finally:
        producer.close()


def decode_costs(registry: SchemaRegistry) -> dict[str, float]:
    """µs per event of decoding a batch of 1,000 20-number events, each format, medians of
    interleaved rounds (the registry asked once, before)."""
    rows = feature_rows(_BATCH)
    _, encode = avro_encoder(registry, "bench-decode", "ads")
    avro = [
        encode(f"e-{i}", dict(zip(FEATURES, row, strict=True)))
        for i, row in enumerate(rows.tolist())
    ]
    json = [event_bytes(f"e-{i}", row) for i, row in enumerate(rows)]
    reader = RegistryEvents(registry)
    reader.prepare(avro)
    schema, limits = FeatureSchema.numbers(FEATURES), Limits(1_000_000)
    timed: dict[str, Callable[[], object]] = {
        "decode, JSON": lambda: decode_batch(json, schema, limits),
        "decode, Avro": lambda: decode_batch(avro, schema, limits, reader),
    }
    return per_event_us(timed, _BATCH)


def render(result: dict[str, Any]) -> str:
    head = f"{'':28}{'events/s':>10}{'x JSON worker':>15}{'x own ceiling':>15}{'peak RSS':>10}"
    lines = [head]
    for name, row in result["rows"].items():
        lines.append(
            f"{name:<28}{row['events_per_s']:>10,}{row['ratio_to_json_worker']:>15.2f}"
            f"{row['ratio_to_own_ceiling']:>15.2f}{row['peak_rss_mb']:>7.0f} MB"
        )
    lines += ["", "per event, in this process (µs)"]
    lines += [f"  {name:<30}{us:>8.2f}" for name, us in result["per_event_us"].items()]
    return "\n".join(lines)
