"""`scorer bench`: the worker measured against its ceiling and the naive baseline, side by side.

Every measured thing runs as its own process, interleaved over rounds, on one pre-filled
input topic read by a fresh consumer group each time; throughput is taken from the output
records' own timestamps (first to last prediction produced), so process start-up and group
joins are not counted. Modes:

- throughput (default): passthrough ceiling, `scorer run` with a logistic regression and a
  100-tree random forest, and the per-event tutorial loop.
- latency: event ts → prediction received, beside broker-only latency (produce → a plain
  consumer of the input topic), for the same events at the same offered load.
- swap: two workers under load; batch latency around `scorer model activate` and the time
  until every worker scores with the new version (control message, then polling path).
- backlog: peak RSS while one worker drains a large queued backlog.
- rebalance: group changes under a steady stream, per client and group option
  (bench_rebalance.py).
- experiments: what a canary, a shadow and drift counts cost (bench_experiments.py).
- compiled: the same models as joblib and as ONNX (bench_compiled.py).
- monitor: `scorer monitor` joining the worker's predictions to their labels, beside the
  worker's own rate, and the memory a join window holds (bench_monitor.py).
- retrain: `scorer retrain` joining events to their clicks while it fits, beside the worker's
  own rate, and its memory per window size (bench_retrain.py).
- ctr: the CTR Pipelines on CTR events, beside the ceiling and a hand-written batched
  DataFrame loop, and the decode and scoring costs per event (bench_ctr.py).
"""

from __future__ import annotations

import importlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from tqdm import tqdm

from worker.errors import ServiceUnavailable
from worker.infra.clients import build_producer, client_options, connect_redis, topic_reader
from worker.models.artifacts import inspect_estimator
from worker.models.registry import Registry
from worker.models.route import Route
from worker.settings import Settings, env_name
from worker.tools.loadgen import Profile, generate
from worker.tools.proc_stats import CpuWindow, tree_peak_rss_mb, tree_rss_mb
from worker.tools.processes import scorer_env, start_module, stop_process, wait_for
from worker.tools.stack import (
    BROKER_NAMES,
    LOOPBACK,
    choose_broker,
    free_port,
    stack_down,
    stack_up,
)
from worker.tools.synthetic import FEATURES, save_model
from worker.tools.worker_logs import activation_time, first_times

MODELS = ("logistic", "forest")


@dataclass(frozen=True)
class BenchOptions:
    events: int = 50_000
    partitions: int = 4
    rounds: int = 3
    batch_max_records: int = 1000
    processes: int = 1
    baseline_events: int = 3000
    rate: float = 0.0
    duration_s: float = 20.0
    out_dir: Path = Path("bench-results")
    external: bool = False
    client: str = "kafka-python"
    broker: str = "auto"


@dataclass
class RunResult:
    name: str
    events_per_s: float
    peak_rss_mb: float
    cores: dict[str, float] = field(default_factory=dict)  # see CpuWindow


@dataclass
class Bench:
    """One stack, one registry with both models, and helpers to run things against them."""

    settings: Settings
    options: BenchOptions
    work_dir: Path
    model_paths: dict[str, Path] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    broker_pid: int | None = None  # the embedded broker's, for its CPU use
    broker_name: str = "external"

    def topic(self, prefix: str, partitions: int | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(**client_options(self.settings))
        try:
            admin.create_topics([NewTopic(name, partitions or self.options.partitions, 1)])
        finally:
            admin.close()
        return name

    def process_env(self, **overrides: object) -> dict[str, str]:
        env = dict(self.env)
        env |= {env_name(k): str(v) for k, v in overrides.items()}
        return env

    def start(self, args: list[str], log_name: str, **overrides: object) -> subprocess.Popen[bytes]:
        return start_module(args, self.process_env(**overrides), self.work_dir / log_name)


@contextmanager
def bench_stack(settings: Settings, options: BenchOptions) -> Iterator[Bench]:
    work_dir = Path(tempfile.mkdtemp(prefix="scorer-bench-"))
    state = None
    if not options.external:
        kind, notice = choose_broker(options.broker)
        print(notice, file=sys.stderr)
        state = stack_up(work_dir, broker_kind=kind)
        settings = settings.replace(
            kafka_bootstrap=state.kafka_bootstrap, redis_url=state.redis_url
        )
    env = scorer_env(
        embedded=not options.external,
        kafka_bootstrap=settings.kafka_bootstrap,
        redis_url=settings.redis_url,
        log_format="json",
        batch_max_records=options.batch_max_records,
        kafka_client=options.client,
        metrics_host=LOOPBACK,
    )
    bench = Bench(
        settings,
        options,
        work_dir,
        env=env,
        broker_pid=state.broker_pid if state else None,
        broker_name=BROKER_NAMES[state.broker] if state else "external",
    )
    try:
        _publish_models(bench)
        yield bench
    finally:
        if state is not None:
            stack_down(work_dir)


def _publish_models(bench: Bench) -> None:
    registry = Registry(connect_redis(bench.settings), "bench", "bench:active")
    for kind in MODELS:
        path = save_model(kind, bench.work_dir / f"{kind}.joblib", seed=1)
        bench.model_paths[kind] = path
        model = joblib.load(path)
        if kind not in {e.version for e in registry.versions()}:
            registry.publish(path.read_bytes(), kind, inspect_estimator(model, FEATURES))


# --- throughput ---------------------------------------------------------------------------


def run_throughput(bench: Bench) -> dict[str, Any]:
    options = bench.options
    input_topic = bench.topic("bench-in")
    prefill(bench, input_topic, options.events)
    variants: list[tuple[str, Callable[[int], RunResult]]] = [
        ("passthrough (ceiling)", lambda r: run_passthrough(bench, input_topic)),
        ("worker, logistic", lambda r: run_worker(bench, input_topic, "logistic")),
        (
            "worker, logistic, exactly-once",
            lambda r: run_worker(bench, input_topic, "logistic", exactly_once=True),
        ),
        ("worker, forest", lambda r: run_worker(bench, input_topic, "forest")),
        ("tutorial, logistic", lambda r: _run_tutorial(bench, input_topic)),
    ]
    if options.processes > 1:  # beside the one-process run, so the scaling ratio is same-run
        variants.insert(
            2,
            (
                f"worker, logistic, {options.processes} proc",
                lambda r: run_worker(bench, input_topic, "logistic", processes=options.processes),
            ),
        )
    results: dict[str, list[RunResult]] = {name: [] for name, _ in variants}
    with tqdm(total=options.rounds * len(variants), desc="bench", unit="run") as bar:
        for round_index in range(options.rounds):
            for name, run in variants:
                bar.set_postfix_str(f"round {round_index + 1}: {name}")
                results[name].append(run(round_index))
                bar.update()
    return _summarise(results)


def prefill(bench: Bench, topic: str, count: int, profile: Profile = "ads") -> None:
    producer = build_producer(bench.settings.replace(linger_ms=20))
    try:
        generate(producer, topic, count, id_prefix="b", progress=True, profile=profile)
    finally:
        producer.close()


def run_worker(
    bench: Bench,
    input_topic: str,
    model: str,
    *,
    processes: int = 1,
    exactly_once: bool = False,
    route: Route | None = None,
    output: str | None = None,
    **settings: object,
) -> RunResult:
    """One `scorer run` over the pre-filled topic, with `model` active and, if given, a route
    (its own keys, so runs side by side never share one), into `output` (a new topic if not
    given), with these settings besides the bench's."""
    output = output or bench.topic("bench-out")
    guarantee = "exactly-once" if exactly_once else "at-least-once"
    tag = uuid.uuid4().hex[:6]
    active_key, route_key = f"bench:active:{tag}", f"bench:route:{tag}"
    registry = Registry(connect_redis(bench.settings), "bench", active_key, route_key)
    registry.activate(model)
    if route is not None and route.canary is not None:
        registry.set_canary(route.canary.version, route.canary.percent)
    if route is not None and route.shadow:
        registry.set_shadow(list(route.shadow))
    args = ["worker", "run", "--processes", str(processes)]
    process = bench.start(
        args,
        f"worker-{model}-{output}.log",
        input_topic=input_topic,
        output_topic=output,
        group_id=f"g-{output}",
        registry_prefix="bench",
        active_key=active_key,
        route_key=route_key,
        shadow_topic=f"{output}-shadow",
        metrics_port=0,
        processing_guarantee=guarantee,
        **settings,
    )
    return _measure(bench, process, output, bench.options.events, f"worker, {model}")


def run_passthrough(bench: Bench, input_topic: str) -> RunResult:
    output = bench.topic("bench-out")
    process = bench.start(
        ["worker.tools.baselines", "passthrough", "--limit", str(bench.options.events)],
        f"passthrough-{output}.log",
        input_topic=input_topic,
        output_topic=output,
        group_id=f"g-{output}",
    )
    return _measure(bench, process, output, bench.options.events, "passthrough")


def _run_tutorial(bench: Bench, input_topic: str) -> RunResult:
    limit = min(bench.options.baseline_events, bench.options.events)
    return run_baseline(bench, input_topic, "tutorial", limit, bench.model_paths["logistic"])


def run_baseline(bench: Bench, input_topic: str, kind: str, limit: int, model: Path) -> RunResult:
    """One of baselines.py's loops scoring `limit` events of the pre-filled topic."""
    output = bench.topic("bench-out")
    process = bench.start(
        ["worker.tools.baselines", kind, "--limit", str(limit), "--model", str(model)],
        f"{kind}-{output}.log",
        input_topic=input_topic,
        output_topic=output,
        group_id=f"g-{output}",
    )
    return _measure(bench, process, output, limit, kind)


def _measure(
    bench: Bench, process: subprocess.Popen[bytes], output: str, expected: int, name: str
) -> RunResult:
    """Count `expected` outputs; rate from their first to last produce timestamp."""
    counter = OutputCounter(bench.settings, output)
    cpu = CpuWindow(process.pid, bench.broker_pid)
    peak_rss = 0.0
    deadline = time.monotonic() + 600
    try:
        while counter.count < expected:
            counter.poll()
            if counter.count and not cpu.started:
                cpu.start()  # the window opens with the first output, as the rate does
            cpu.sample()
            peak_rss = max(peak_rss, tree_rss_mb(process.pid))
            if process.poll() is not None:  # done or dead: what it produced is in the topic
                deadline = min(deadline, time.monotonic() + 15)
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"bench: {name} produced {counter.count} of {expected} "
                    f"(exit code {process.returncode}); see {bench.work_dir}"
                )
        peak_rss = max(peak_rss, tree_peak_rss_mb(process.pid))
    finally:
        stop_process(process)
        counter.close()
    seconds = max(1e-3, (counter.last_ms - counter.first_ms) / 1000)
    return RunResult(name, (counter.count - 1) / seconds, peak_rss, cpu.cores())


class OutputCounter:
    """Reads an output topic from the beginning, as a downstream reader of exactly-once output
    does (read_committed: no effect without transactions); keeps the count and the timestamp
    range."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self._consumer = topic_reader(
            settings,
            [topic],
            max_partition_fetch_bytes=8 * 1024 * 1024,
            isolation_level="read_committed",
        )
        self.count = 0
        self.first_ms = 2**63
        self.last_ms = 0

    def poll(self) -> None:
        for records in self._consumer.poll(timeout_ms=200).values():
            self.count += len(records)
            stamps = [r.timestamp for r in records]
            self.first_ms = min(self.first_ms, *stamps)
            self.last_ms = max(self.last_ms, *stamps)

    def close(self) -> None:
        self._consumer.close()


def ratio_rows(runs: dict[str, list[RunResult]], references: dict[str, str]) -> dict[str, Any]:
    """A side mode's rows: medians over the rounds, and for each reference run (`ratio_to_<key>`)
    the median of the rounds' own ratios to it."""
    rows = {}
    for name, results in runs.items():
        rates = [r.events_per_s for r in results]
        ratios = {
            f"ratio_to_{key}": round(
                statistics.median(
                    r / c.events_per_s for r, c in zip(rates, runs[reference], strict=True)
                ),
                3,
            )
            for key, reference in references.items()
        }
        rows[name] = {
            "events_per_s": round(statistics.median(rates)),
            "runs": [round(r) for r in rates],
            **ratios,
            "peak_rss_mb": round(statistics.median(r.peak_rss_mb for r in results), 1),
        }
    return rows


def per_event_us(
    timed: dict[str, Callable[[], object]], batch: int, rounds: int = 7, repeats: int = 15
) -> dict[str, float]:
    """µs per event of each call over a batch of `batch` events, in this process: the median
    of `rounds` interleaved rounds of `repeats` calls each (noise only slows a round)."""
    samples: dict[str, list[float]] = {name: [] for name in timed}
    for _ in range(rounds):
        for name, call in timed.items():
            started = time.perf_counter()
            for _ in range(repeats):
                call()
            samples[name].append((time.perf_counter() - started) / repeats / batch * 1e6)
    return {name: round(statistics.median(values), 2) for name, values in samples.items()}


def _summarise(results: dict[str, list[RunResult]]) -> dict[str, Any]:
    ceiling = results["passthrough (ceiling)"]
    baseline = results["tutorial, logistic"]
    rows = {}
    for name, runs in results.items():
        rates = [r.events_per_s for r in runs]
        rows[name] = {
            "events_per_s": statistics.median(rates),
            "min": min(rates),
            "max": max(rates),
            "runs": rates,
            "ratio_to_ceiling": statistics.median(
                r.events_per_s / c.events_per_s for r, c in zip(runs, ceiling, strict=True)
            ),
            "ratio_to_baseline": statistics.median(
                r.events_per_s / b.events_per_s for r, b in zip(runs, baseline, strict=True)
            ),
            "peak_rss_mb": statistics.median(r.peak_rss_mb for r in runs),
            "cores": {
                part: round(statistics.median(r.cores.get(part, 0.0) for r in runs), 2)
                for part in runs[0].cores
            },
        }
    return rows


# --- latency ------------------------------------------------------------------------------


def run_latency(bench: Bench, rate: float) -> dict[str, Any]:
    """`rounds` runs side by side; each percentile is the median over the rounds, and the added
    p99 is the median of each round's own difference. The CDFs are the median round's."""
    rounds = [_latency_round(bench, rate) for _ in range(bench.options.rounds)]
    rounds.sort(key=lambda r: r["added_p99_ms"])
    median = rounds[len(rounds) // 2]

    def percentiles(path: str) -> dict[str, float]:
        return {q: statistics.median(r[path][q] for r in rounds) for q in median[path]}

    return {
        "offered_rate": rate,
        "seconds": bench.options.duration_s,
        "rounds": len(rounds),
        "broker_only_ms": percentiles("broker_only_ms"),
        "worker_ms": percentiles("worker_ms"),
        "added_p99_ms": round(statistics.median(r["added_p99_ms"] for r in rounds), 2),
        "added_p99_ms_each": [r["added_p99_ms"] for r in rounds],
        "worker_cdf_ms": median["worker_cdf_ms"],
        "broker_only_cdf_ms": median["broker_only_cdf_ms"],
    }


def _latency_round(bench: Bench, rate: float) -> dict[str, Any]:
    """The same events timed twice: at a plain consumer of the input, and as predictions."""
    input_topic, output = bench.topic("lat-in"), bench.topic("lat-out")
    active_key = f"bench:active:{uuid.uuid4().hex[:6]}"
    Registry(connect_redis(bench.settings), "bench", active_key).activate("logistic")
    port = free_port()
    worker = bench.start(
        ["worker", "run"],
        "latency-worker.log",
        input_topic=input_topic,
        output_topic=output,
        group_id=f"g-{output}",
        registry_prefix="bench",
        active_key=active_key,
        metrics_port=port,
    )
    try:
        wait_ready(port)
        broker_only = ArrivalTimer(bench.settings, input_topic, "ts")
        predictions = ArrivalTimer(bench.settings, output, "event_ts")
        with broker_only.running(), predictions.running():
            offer_load(bench, input_topic, rate, bench.options.duration_s)
            expected = int(rate * bench.options.duration_s)
            wait_for(lambda: predictions.count >= expected * 0.999, 60, "predictions")
    finally:
        stop_process(worker)
    worker_ms, broker_ms = predictions.percentiles(), broker_only.percentiles()
    return {
        "broker_only_ms": broker_ms,
        "worker_ms": worker_ms,
        "added_p99_ms": round(worker_ms["p99"] - broker_ms["p99"], 2),
        "worker_cdf_ms": predictions.cdf(),
        "broker_only_cdf_ms": broker_only.cdf(),
    }


class ArrivalTimer:
    """A plain consumer (no group) recording now minus the record's own timestamp field."""

    def __init__(self, settings: Settings, topic: str, ts_field: str, keep: bool = False) -> None:
        self._settings = settings
        self._topic = topic
        self._field = ts_field
        self._keep = keep
        self.latencies_ms: list[float] = []
        self.records: list[tuple[float, dict[str, Any]]] = []  # (arrival, record), with keep
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    @property
    def count(self) -> int:
        return len(self.latencies_ms)

    @contextmanager
    def running(self) -> Iterator[None]:
        self._thread.start()
        self._ready.wait(30)
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join(10)

    def _run(self) -> None:
        consumer = topic_reader(self._settings, [self._topic], from_end=True)
        self._ready.set()
        while not self._stop.is_set():
            for records in consumer.poll(timeout_ms=100).values():
                now = time.time()
                values = [orjson.loads(r.value) for r in records]
                self.latencies_ms += [(now - value[self._field]) * 1000 for value in values]
                if self._keep:
                    self.records += [(now, value) for value in values]
        consumer.close()

    def percentiles(self) -> dict[str, float]:
        values = np.array(self.latencies_ms)
        return {f"p{q}": round(float(np.percentile(values, q)), 2) for q in (50, 95, 99)}

    def p99_between(self, start: float, end: float) -> float:
        window = [(now - v[self._field]) * 1000 for now, v in self.records if start <= now < end]
        return round(float(np.percentile(window, 99)), 2) if window else float("nan")

    def first_version_after(self, version: str, since: float) -> float:
        return min(
            (
                v["scored_at"]
                for _, v in self.records
                if v["model_version"] == version and v["scored_at"] >= since
            ),
            default=float("nan"),
        )

    def cdf(self) -> list[float]:
        quantiles = np.percentile(np.array(self.latencies_ms), np.arange(0, 101))
        return [round(float(q), 2) for q in quantiles]


def offer_load(
    bench: Bench, topic: str, rate: float, seconds: float, progress: bool = True
) -> None:
    producer = build_producer(bench.settings)
    try:
        count = int(rate * seconds)
        generate(producer, topic, count, rate=rate, id_prefix="lat", progress=progress)
    finally:
        producer.close()


def wait_ready(port: int, timeout_s: float = 60) -> None:
    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/readyz", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    wait_for(ready, timeout_s, "the worker to be ready")


# --- hot swap ----------------------------------------------------------------------------


def run_swap(bench: Bench, rate: float) -> dict[str, Any]:
    """Two workers under load: activate by command (control message), later set the key by
    hand (polling path); latency around each switch, and time until every worker runs it."""
    input_topic, output = bench.topic("swap-in"), bench.topic("swap-out")
    active_key = f"bench:active:{uuid.uuid4().hex[:6]}"
    registry = Registry(connect_redis(bench.settings), "bench", active_key)
    registry.activate("logistic")
    overrides = {
        "input_topic": input_topic,
        "output_topic": output,
        "group_id": f"g-{output}",
        "registry_prefix": "bench",
        "active_key": active_key,
    }
    ports = [free_port() for _ in range(2)]
    logs = [bench.work_dir / f"swap-worker-{i}-{output}.log" for i in range(2)]
    workers = [
        bench.start(["worker", "run"], path.name, metrics_port=port, **overrides)
        for port, path in zip(ports, logs, strict=True)
    ]
    predictions = ArrivalTimer(bench.settings, output, "event_ts", keep=True)
    seconds = max(bench.options.duration_s, 30.0)
    try:
        for port in ports:
            wait_ready(port)
        with predictions.running():
            load = threading.Thread(target=offer_load, args=(bench, input_topic, rate, seconds))
            load.start()
            time.sleep(seconds / 3)
            command_at = time.time()
            subprocess.run(
                [sys.executable, "-m", "worker", "model", "activate", "forest"],
                env=bench.process_env(**overrides),
                check=True,
                capture_output=True,
            )
            time.sleep(seconds / 3)
            polled_at = time.time()
            registry.activate("logistic")  # a hand-set key: no control message
            load.join()
            wait_for(lambda: predictions.count >= int(rate * seconds) * 0.999, 60, "predictions")
    finally:
        for worker in workers:
            stop_process(worker)
    control_at = activation_time(logs, since=command_at, fallback=command_at)
    return {
        "offered_rate": rate,
        "steady_p99_ms": predictions.p99_between(control_at - 9, control_at - 1),
        "swap_p99_ms": predictions.p99_between(control_at - 5, control_at + 5),
        "control_first_new_s": predictions.first_version_after("forest", control_at) - control_at,
        "control_all_workers_s": max(
            first_times(logs, "model.loaded", since=command_at, model_version="forest")
        )
        - control_at,
        "poll_all_workers_s": max(
            first_times(logs, "model.loaded", since=polled_at, model_version="logistic")
        )
        - polled_at,
        "active_poll_s": bench.settings.active_poll_s,
    }


# --- backlog ------------------------------------------------------------------------------


def run_backlog(bench: Bench) -> dict[str, Any]:
    input_topic = bench.topic("backlog-in")
    prefill(bench, input_topic, bench.options.events)
    result = run_worker(bench, input_topic, "logistic")
    return {
        "events": bench.options.events,
        "events_per_s": result.events_per_s,
        "peak_rss_mb": result.peak_rss_mb,
    }


# --- report -------------------------------------------------------------------------------


def machine() -> str:
    return (
        f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}"
    )


def render_throughput(rows: dict[str, Any]) -> str:
    lines = [
        f"{'':31}{'events/s':>10}{'min-max':>17}{'x ceiling':>11}{'x tutorial':>12}"
        f"{'peak RSS':>11}  cores: run+broker+bench"
    ]
    for name, row in rows.items():
        spread = f"{row['min']:,.0f}-{row['max']:,.0f}"
        lines.append(
            f"{name:<31}{row['events_per_s']:>10,.0f}{spread:>17}"
            f"{row['ratio_to_ceiling']:>11.2f}{row['ratio_to_baseline']:>12.1f}"
            f"{row['peak_rss_mb']:>8.0f} MB  {_cores(row.get('cores', {}))}"
        )
    return "\n".join(lines)


def _cores(cores: dict[str, float]) -> str:
    parts = [cores[part] for part in ("contender", "broker", "bench") if part in cores]
    return f"{'+'.join(f'{c:.2f}' for c in parts)} = {sum(parts):.2f}" if parts else ""


def save(results: dict[str, Any], out_dir: Path) -> Path:
    """Merge into out_dir/bench.json (each mode keeps its latest result) and redraw the chart."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "bench.json"
    merged = orjson.loads(path.read_bytes()) if path.exists() else {}
    merged |= results
    path.write_bytes(orjson.dumps(merged, option=orjson.OPT_INDENT_2))
    draw_chart(merged, out_dir / "bench.png")
    return path


def draw_chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (bars, cdf) = plt.subplots(1, 2, figsize=(13, 4.8))
    rows = results.get("throughput", {}).get("rows", {})
    if rows:
        names = list(rows)
        medians = [rows[n]["events_per_s"] for n in names]
        errors = [
            [m - rows[n]["min"] for n, m in zip(names, medians, strict=True)],
            [rows[n]["max"] - m for n, m in zip(names, medians, strict=True)],
        ]
        colours = [
            "#888" if "ceiling" in n else "#c55" if "tutorial" in n else "#2a7" for n in names
        ]
        bars.barh(names, medians, xerr=errors, color=colours)
        bars.invert_yaxis()
        bars.set_xlabel("events/s (median, min-max)")
        bars.set_title("Throughput")
    latency = results.get("latency")
    if latency:
        quantiles = np.arange(0, 101)
        cdf.plot(latency["broker_only_cdf_ms"], quantiles, label="broker only")
        cdf.plot(latency["worker_cdf_ms"], quantiles, label="worker end to end")
        cdf.set_xscale("log")
        cdf.set_xlabel("latency, ms (log)")
        cdf.set_ylabel("percentile")
        cdf.set_title(f"Latency at {latency['offered_rate']:,.0f} events/s offered")
        cdf.legend()
    figure.suptitle(
        " · ".join(str(results[k]) for k in ("machine", "broker") if k in results), fontsize=9
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# modes measured by a module of their own, each with run(bench) and render(result)
SIDE_MODES = {
    "experiments": "bench_experiments",
    "compiled": "bench_compiled",
    "monitor": "bench_monitor",
    "retrain": "bench_retrain",
    "ctr": "bench_ctr",
    "avro": "bench_avro",
}


def run_bench(settings: Settings, options: BenchOptions, mode: str) -> int:
    """Run one mode, print its result, merge it into bench.json and redraw bench.png."""
    with bench_stack(settings, options) as bench:
        result: dict[str, Any] = {"machine": machine(), "broker": bench.broker_name}
        if mode == "throughput":
            rows = run_throughput(bench)
            result["throughput"] = {"rows": rows, "options": _options_json(options)}
            print(render_throughput(rows))
        elif mode == "backlog":
            result["backlog"] = run_backlog(bench)
            print(orjson.dumps(result["backlog"], option=orjson.OPT_INDENT_2).decode())
        elif mode in SIDE_MODES:
            module = importlib.import_module(f"worker.tools.{SIDE_MODES[mode]}")
            measured = module.run(bench)
            # its own key and machine line: the top-level ones stay the chart's
            key = f"{mode} ({options.client}, {bench.broker_name})"
            result = {key: {"machine": result["machine"], **measured}}
            print(module.render(measured))
        elif mode == "rebalance":
            from worker.tools.bench_rebalance import render_rebalance, run_rebalance, scenarios

            rate = options.rate or 2000.0
            rows = run_rebalance(bench, rate, scenarios(bench.broker_name))
            # keyed by broker, with its own machine line: the top-level ones describe the
            # throughput run the chart draws
            result = {
                f"rebalance ({bench.broker_name})": {
                    "machine": result["machine"],
                    "offered_rate": rate,
                    "rows": rows,
                }
            }
            print(render_rebalance(rows))
        else:
            rate = options.rate or _half_capacity(bench, options.out_dir)
            result[mode] = run_latency(bench, rate) if mode == "latency" else run_swap(bench, rate)
            shown = {k: v for k, v in result[mode].items() if not k.endswith("_cdf_ms")}
            print(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
    path = save(result, options.out_dir)
    print(f"results: {path}, chart: {path.with_suffix('.png')}")
    return 0


def _half_capacity(bench: Bench, out_dir: Path) -> float:
    """Half the worker's measured throughput: from the last throughput run, else measured now."""
    path = out_dir / "bench.json"
    if path.exists():
        rows = orjson.loads(path.read_bytes()).get("throughput", {}).get("rows", {})
        if "worker, logistic" in rows:
            return float(round(rows["worker, logistic"]["events_per_s"] / 2, -2))
    input_topic = bench.topic("calibrate-in")
    prefill(bench, input_topic, bench.options.events)
    return float(round(run_worker(bench, input_topic, "logistic").events_per_s / 2, -2))


def _options_json(options: BenchOptions) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in options.__dict__.items()}
