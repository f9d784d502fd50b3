"""`scorer bench --mode rebalance`: what group changes cost a steady stream.

For each client and group option, on 8 partitions at a steady offered rate: two workers,
two more join, the first two leave (SIGTERM), then one of the rest is restarted (a rolling
restart; with static membership it comes back under the same `group_instance_id`). Measured
from the predictions' own `scored_at` and the workers' JSON logs:

- longest gap: the longest time with no prediction at all (a stop-the-world rebalance);
- longest partition stall: the longest time one partition went without a prediction;
- scored twice / missing: event ids with more than one prediction, and with none;
- settle: from each change to the last partition assignment in its phase, in any worker's log;
- restart revocations: partitions the other workers gave up during the restart (0 is a
  restart with no rebalance at all).

With `--rounds N` (default 3) each scenario runs N times, interleaved with the others: the
table gives the median of each timing and the counts summed over the rounds.
"""

from __future__ import annotations

import itertools
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from worker.infra.clients import connect_redis, topic_reader
from worker.models.registry import Registry
from worker.tools.bench import Bench, offer_load, wait_ready
from worker.tools.processes import stop_process
from worker.tools.stack import free_port
from worker.tools.worker_logs import entries_between, times_between

PARTITIONS = 8
PHASE_S = 15.0  # between group changes: long enough for each one to settle, on Tansu too


@dataclass(frozen=True)
class Scenario:
    client: str
    assignment: str = "eager"
    protocol: str = "classic"
    static: bool = False

    @property
    def name(self) -> str:
        how = self.assignment if self.protocol == "classic" else "consumer protocol"
        return f"{self.client}, {how}" + (", static" if self.static else "")


SCENARIOS = (
    Scenario("kafka-python"),
    Scenario("kafka-python", "cooperative-sticky"),
    Scenario("kafka-python", "cooperative-sticky", static=True),
    Scenario("confluent"),
    Scenario("confluent", "cooperative-sticky"),
    Scenario("confluent", "cooperative-sticky", static=True),
    Scenario("confluent", protocol="consumer"),
)


class Predictions:
    """Every prediction of the output topic, read in a thread: (partition, scored_at, id)."""

    def __init__(self, bench: Bench, topic: str) -> None:
        self._bench, self._topic = bench, topic
        self.rows: list[tuple[int, float, str]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @contextmanager
    def running(self) -> Iterator[Predictions]:
        self._thread.start()
        self._ready.wait(30)
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(10)

    def _run(self) -> None:
        consumer = topic_reader(self._bench.settings, [self._topic], from_end=True)
        self._ready.set()
        while not self._stop.is_set():
            for tp, records in consumer.poll(timeout_ms=100).items():
                for record in records:
                    value = orjson.loads(record.value)
                    self.rows.append((tp.partition, value["scored_at"], value["event_id"]))
        consumer.close()


class Fleet:
    """The scenario's worker processes, each with its log file and (static) member id."""

    def __init__(self, bench: Bench, scenario: Scenario, overrides: dict[str, object]) -> None:
        self._bench, self._scenario, self._overrides = bench, scenario, overrides
        self.logs: list[Path] = []
        self.log_of: dict[int, Path] = {}  # each running member's current log
        self.running: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, member: int) -> int:
        port = free_port()
        log_name = f"rebalance-{self._overrides['output_topic']}-{len(self.logs)}.log"
        identity = {"group_instance_id": f"bench-{member}"} if self._scenario.static else {}
        self.running[member] = self._bench.start(
            ["worker", "run"],
            log_name,
            metrics_port=port,
            kafka_client=self._scenario.client,
            partition_assignment=self._scenario.assignment,
            group_protocol=self._scenario.protocol,
            **identity,
            **self._overrides,
        )
        self.logs.append(self._bench.work_dir / log_name)
        self.log_of[member] = self.logs[-1]
        return port

    def stop(self, member: int) -> int:
        return stop_process(self.running.pop(member))

    def stop_all(self) -> None:
        for member in list(self.running):
            self.stop(member)


def run_rebalance(bench: Bench, rate: float, scenarios: tuple[Scenario, ...]) -> dict[str, Any]:
    """Each scenario `bench.options.rounds` times, interleaved; see `_combine`."""
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _ in range(bench.options.rounds):
        for scenario in scenarios:
            runs[scenario.name].append(_run_scenario(bench, scenario, rate))
            print(f"{scenario.name}: {runs[scenario.name][-1]}", file=sys.stderr)
    return {name: _combine(each) for name, each in runs.items()}


COUNTED = ("scored_twice", "missing")  # summed over the rounds: one duplicate is one too many


def _combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each timing over the rounds, the counts summed, and every round kept."""
    combined: dict[str, Any] = {
        key: sum(run[key] for run in runs)
        if key in COUNTED
        else round(statistics.median(run[key] for run in runs), 2)
        for key in runs[0]
    }
    return combined | {"rounds": runs}


def _run_scenario(bench: Bench, scenario: Scenario, rate: float) -> dict[str, Any]:
    input_topic = bench.topic("rebalance-in", PARTITIONS)
    output = bench.topic("rebalance-out", PARTITIONS)
    active_key = f"bench:active:{uuid.uuid4().hex[:6]}"
    Registry(connect_redis(bench.settings), "bench", active_key).activate("logistic")
    overrides: dict[str, object] = {
        "input_topic": input_topic,
        "output_topic": output,
        "group_id": f"g-{output}",
        "registry_prefix": "bench",
        "active_key": active_key,
    }
    fleet = Fleet(bench, scenario, overrides)
    seconds = 4 * PHASE_S
    changes: dict[str, float] = {}
    try:
        for port in [fleet.start(0), fleet.start(1)]:
            wait_ready(port)
        with Predictions(bench, output).running() as predictions:
            load = threading.Thread(
                target=offer_load, args=(bench, input_topic, rate, seconds, False)
            )
            started = time.time()
            load.start()
            _at(started + PHASE_S)
            changes["join"] = time.time()
            fleet.start(2)
            fleet.start(3)
            _at(started + 2 * PHASE_S)
            changes["leave"] = time.time()
            leaving = [threading.Thread(target=fleet.stop, args=(m,)) for m in (0, 1)]
            for thread in leaving:
                thread.start()
            for thread in leaving:
                thread.join()
            _at(started + 3 * PHASE_S)
            changes["restart"] = time.time()
            stayed = fleet.log_of[3]
            fleet.stop(2)
            fleet.start(2)
            load.join()
            expected = int(rate * seconds)
            deadline = time.monotonic() + 60  # a group that never settles: report the missing
            while len(predictions.rows) < expected and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2.0)  # a duplicate, were there one, arrives by now
            rows = list(predictions.rows)
    finally:
        fleet.stop_all()
    load_window = (started, started + seconds)
    return _summarise(
        rows,
        logs=fleet.logs,
        stayed=stayed,
        changes=changes,
        load_window=load_window,
        expected=int(rate * seconds),
    )


def _at(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def _summarise(
    rows: list[tuple[int, float, str]],
    *,
    logs: list[Path],
    stayed: Path,
    changes: dict[str, float],
    load_window: tuple[float, float],
    expected: int,
) -> dict[str, Any]:
    """`stayed`: the log of the worker that ran on through the restart of another."""
    load_start, load_end = load_window
    in_load = sorted(t for _, t, _ in rows if load_start + 1 <= t <= load_end)
    per_partition: dict[int, list[float]] = defaultdict(list)
    for partition, scored_at, _ in rows:
        per_partition[partition].append(scored_at)
    counts = Counter(event_id for _, _, event_id in rows)
    settle = {}
    for name, at in changes.items():  # each change has its phase, until the next one
        assigned = times_between(logs, "partitions.assigned", at, at + PHASE_S)
        settle[f"{name}_settle_s"] = round(max(assigned, default=at) - at, 2)
    revoked_in_restart = [
        entry
        for entry in entries_between([stayed], "partitions.revoked", changes["restart"], load_end)
        if entry["partitions"]
    ]
    return {
        "longest_gap_s": round(_longest_gap(in_load), 2),
        "longest_partition_stall_s": round(
            max(
                _longest_gap(sorted(t for t in times if load_start + 1 <= t <= load_end))
                for times in per_partition.values()
            ),
            2,
        ),
        "scored_twice": sum(1 for n in counts.values() if n > 1),
        "missing": max(0, expected - len(counts)),
        **settle,
        "restart_revocations": sum(len(entry["partitions"]) for entry in revoked_in_restart),
    }


def _longest_gap(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def render_rebalance(results: dict[str, Any]) -> str:
    columns = (
        ("longest_gap_s", "gap s"),
        ("longest_partition_stall_s", "stall s"),
        ("scored_twice", "twice"),
        ("missing", "missing"),
        ("join_settle_s", "join s"),
        ("leave_settle_s", "leave s"),
        ("restart_settle_s", "restart s"),
        ("restart_revocations", "revoked"),
    )
    lines = [f"{'':42}" + "".join(f"{title:>10}" for _, title in columns)]
    for name, row in results.items():
        lines.append(f"{name:<42}" + "".join(f"{row[key]:>10}" for key, _ in columns))
    return "\n".join(lines)


def scenarios(broker_name: str) -> tuple[Scenario, ...]:
    """All of them; Tansu has no KIP-848 consumer protocol."""
    if broker_name == "Tansu":
        return tuple(s for s in SCENARIOS if s.protocol == "classic")
    return SCENARIOS
