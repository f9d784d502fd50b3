"""`scorer demo --quality`: the model lifecycle on the embedded stack, with the real commands.

Stack up → v1 (a weak model: half the features), v2 (a better one), v3 (broken: trained on
shuffled labels) → v2 as a 20 % canary → one `scorer run` and one `scorer monitor` with the
guardrails on → events at a steady rate, and for each a click drawn from its known true click
probability, sent `label_delay_s` later → when `scorer quality` says v2 is better, `scorer
model promote` → v3 as a 20 % canary → the monitor aborts it on its own → report: each
version's AUC with its interval, the verdicts, and how long v3's abort took.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
from kafka import KafkaProducer
from sklearn.linear_model import LogisticRegression

from worker.commands.quality import quality_report
from worker.infra.clients import client_options, ensure_topics
from worker.settings import Settings, env_name
from worker.tools.demo import say, scorer
from worker.tools.processes import scorer_env, start_module, stop_process, wait_for
from worker.tools.stack import choose_broker, stack_down, stack_up
from worker.tools.synthetic import FEATURES, click_labels, click_probability, event_bytes

MIN_LABELS = 300
GUARDS = {"guard_min_labels": MIN_LABELS, "guard_min_auc": 0.65, "quality_interval_s": 1.0}
PERCENT = 20


@dataclass
class Timeline:
    """When each step happened (seconds since the stream began) and what the monitor said."""

    promoted_at: float | None = None
    v3_canary_at: float | None = None
    v3_min_labels_at: float | None = None
    v3_aborted_at: float | None = None
    verdicts: list[tuple[str, str]] = field(default_factory=list)  # canary, verdict


def run_quality_demo(rate: float, label_delay_s: float, broker: str, timeout_s: float) -> int:
    kind, notice = choose_broker(broker)
    state_dir = Path(tempfile.mkdtemp(prefix="scorer-quality-demo-"))
    say(notice)
    stack = stack_up(state_dir, broker_kind=kind)
    settings = Settings(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url)
    settings = settings.replace(**GUARDS)
    env = scorer_env(
        kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, log_format="json"
    ) | {env_name(name): str(value) for name, value in GUARDS.items()}
    processes: list[subprocess.Popen[bytes]] = []
    stream: Stream | None = None
    try:
        stream = Stream(settings, rate, label_delay_s)
        _publish(state_dir, env)
        scorer(env, "model", "canary", "v2", "--percent", str(PERCENT), "--reason", "demo")
        processes = [
            start_module(
                ["worker", "run"], env | {"SCORER_METRICS_PORT": "0"}, state_dir / "worker.log"
            ),
            start_module(
                ["worker", "monitor"], env | {"SCORER_METRICS_PORT": "0"}, state_dir / "monitor.log"
            ),
        ]
        say("$ scorer run & scorer monitor &   # logs in " + str(state_dir))
        stream.start()
        timeline = _lifecycle(settings, env, stream, timeout_s)
        return _report(quality_report(settings), timeline, stream)
    finally:
        if stream is not None:
            stream.stop()
        for process in processes:
            stop_process(process)
        stack_down(state_dir)
        say("stack stopped")


class Stream:
    """Events at `rate` per second from a thread; each one's click, drawn from its true
    probability, sent `delay_s` later. `drift()` changes the true probability from then on;
    `clicks` keeps each event's click and when it was sent."""

    def __init__(self, settings: Settings, rate: float, delay_s: float) -> None:
        ensure_topics(settings, labels=True)
        self._settings = settings
        self.rate, self.delay_s = rate, delay_s
        self._producer = KafkaProducer(**client_options(settings), linger_ms=5)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = self.start_wall = 0.0
        self.sent = self.labelled = 0
        self.weights: np.ndarray | None = None  # None: the synthetic truth
        self.drifted_at: float | None = None  # seconds since the stream began
        self.clicks: dict[str, tuple[float, int]] = {}

    def drift(self, weights: np.ndarray) -> None:
        self.drifted_at = self.elapsed()
        self.weights = weights

    def start(self) -> None:
        self.started, self.start_wall = time.monotonic(), time.time()
        self._thread.start()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self._producer.close(timeout=5)

    def _run(self) -> None:
        rng = np.random.default_rng(7)
        pending: deque[tuple[float, bytes]] = deque()
        while not self._stopping.is_set():
            rows = rng.normal(size=(max(1, int(self.rate / 10)), len(FEATURES))).round(4)
            truth = (
                click_probability(rows)
                if self.weights is None
                else click_probability(rows, self.weights)
            )
            clicks = rng.random(len(rows)) < truth
            due = time.monotonic() + self.delay_s
            sent_at = self.elapsed()
            for row, click in zip(rows, clicks, strict=True):
                event_id = f"q-{self.sent}"
                self._producer.send(
                    self._settings.input_topic,
                    key=event_id.encode(),
                    value=event_bytes(event_id, row),
                )
                label = {"event_id": event_id, "label": int(click), "ts": time.time()}
                pending.append((due, orjson.dumps(label)))
                self.clicks[event_id] = (sent_at, int(click))
                self.sent += 1
            while pending and pending[0][0] <= time.monotonic():
                self._producer.send(self._settings.labels_topic, pending.popleft()[1])
                self.labelled += 1
            self._stopping.wait(0.1)


def _lifecycle(
    settings: Settings, env: dict[str, str], stream: Stream, timeout_s: float
) -> Timeline:
    timeline = Timeline()
    wait_for(lambda: _verdict(settings, timeline) == "better", timeout_s, "v2's verdict: better")
    timeline.promoted_at = stream.elapsed()
    scorer(env, "model", "promote", "--reason", "demo: scorer quality says better")
    scorer(env, "model", "canary", "v3", "--percent", str(PERCENT), "--reason", "demo")
    timeline.v3_canary_at = stream.elapsed()

    def aborted() -> bool:
        report = quality_report(settings)
        canary = report["versions"].get("v3", {}).get("arms", {}).get("canary", {})
        if timeline.v3_min_labels_at is None and canary.get("labelled", 0) >= MIN_LABELS:
            timeline.v3_min_labels_at = stream.elapsed()
        return report["route"].get("canary") is None

    wait_for(aborted, timeout_s, "the monitor to abort v3")
    timeline.v3_aborted_at = stream.elapsed()
    return timeline


def _verdict(settings: Settings, timeline: Timeline) -> str:
    comparison = quality_report(settings)["comparison"]
    if comparison is None:
        return ""
    if not timeline.verdicts or timeline.verdicts[-1] != (
        comparison["canary"],
        comparison["verdict"],
    ):
        timeline.verdicts.append((comparison["canary"], comparison["verdict"]))
    time.sleep(0.5)
    return str(comparison["verdict"])


def _publish(state_dir: Path, env: dict[str, str]) -> None:
    """v1 sees half the features, v2 all of them, v3 learned from shuffled clicks."""
    rows = np.random.default_rng(1).normal(size=(8000, len(FEATURES))).round(4)
    clicks = click_labels(rows, seed=1)
    half = rows.copy()
    half[:, len(FEATURES) // 2 :] = 0
    models = {
        "v1": (LogisticRegression(max_iter=500).fit(half, clicks), "half the features"),
        "v2": (LogisticRegression(max_iter=500).fit(rows, clicks), "all the features"),
        "v3": (
            LogisticRegression(max_iter=500).fit(
                rows, np.random.default_rng(2).permutation(clicks)
            ),
            "trained on shuffled clicks (broken)",
        ),
    }
    for version, (model, note) in models.items():
        path = state_dir / f"{version}.joblib"
        joblib.dump(model, path)
        activate = ["--activate"] if version == "v1" else []
        features = ",".join(FEATURES)
        scorer(env, "model", "publish", str(path), "--version", version, "--features", features,
               "--note", note, *activate)  # fmt: skip


def _report(report: dict[str, Any], timeline: Timeline, stream: Stream) -> int:
    print("\n=== quality demo report ===")
    print(f"events sent                 {stream.sent} ({stream.labelled} labelled so far)")
    for version, entry in report["versions"].items():
        for arm, figures in entry["arms"].items():
            auc = figures.get("auc")
            interval = (
                f" (95 % {figures['auc_low']:.3f}..{figures['auc_high']:.3f})"
                if figures.get("auc_low") is not None
                else ""
            )
            shown = "-" if auc is None else f"{auc:.3f}{interval}"
            print(
                f"{version} {arm:<8}                {figures['labelled']:>6} labelled, AUC {shown}"
            )
    verdicts = ", ".join(f"{canary}: {verdict}" for canary, verdict in timeline.verdicts)
    print(f"verdicts seen               {verdicts}")
    print(f"v2 promoted at              {timeline.promoted_at:.1f} s")
    ok = timeline.v3_aborted_at is not None and timeline.v3_canary_at is not None
    if ok:
        assert timeline.v3_aborted_at is not None and timeline.v3_canary_at is not None
        took = timeline.v3_aborted_at - timeline.v3_canary_at
        after = (
            f", {timeline.v3_aborted_at - timeline.v3_min_labels_at:.1f} s after it had "
            f"{MIN_LABELS} labels"
            if timeline.v3_min_labels_at is not None
            else ""
        )
        print(f"v3 canary → automatic abort {took:.1f} s{after}")
    print(f"result                      {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1
