"""`scorer demo --scenario drift`: the closed loop on the embedded stack, with no person in it.

Stack up → v1, a logistic regression fitted to the synthetic truth, active → one `scorer run`,
one `scorer monitor` and one `scorer retrain` → events at a steady rate, each one's click drawn
from the true click probability and sent `label_delay_s` later → after `change_after_s` the
truth changes (the two strongest feature weights change sign), so v1's live AUC falls → the
retrainer fits candidates on the newest labelled rows, publishes a better one as a canary, the
monitor promotes it on its live verdict → live AUC recovers. Report: AUC over time per version
(text, and a PNG chart beside it), the time from the change to the promotion, the events each
version scored, every candidate the retrainer fitted and what became of it, and the live AUC at
the end against what a model fitted offline to post-change rows reaches.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
from kafka import KafkaConsumer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from worker.infra.clients import client_options, connect_redis
from worker.lifecycle.candidate_log import CandidateLog
from worker.models.registry import Registry
from worker.settings import Settings, env_name
from worker.tools.demo import say, scorer
from worker.tools.demo_quality import Stream
from worker.tools.processes import scorer_env, start_module, stop_process, wait_for
from worker.tools.stack import choose_broker, stack_down, stack_up
from worker.tools.synthetic import DRIFTED_WEIGHTS, FEATURES, click_probability

# The loop's settings: a round at least every 30 s, or whenever the 4,000-row window (8 s of
# events) has been replaced; a canary on 20 % of the keys, promoted once it has 500 labelled
# predictions and a "better" verdict; a primary under AUC 0.7 calls a round at once.
LOOP = {
    "quality_interval_s": 1.0,
    "guard_min_labels": 300,
    "guard_min_auc": 0.7,
    "guard_promote_min_labels": 500,
    "retrain_window_rows": 4000,
    "retrain_min_rows": 2000,
    "retrain_min_new_labels": 4000,
    "retrain_interval_s": 30.0,
    "retrain_canary_percent": 20.0,
}
BUCKET_S = 10.0
SETTLE_S = 60.0  # after the promotion, the span the final live AUC is measured over


@dataclass(frozen=True)
class Scored:
    event_id: str
    version: str
    arm: str
    score: float


def run_drift_demo(
    rate: float, label_delay_s: float, change_after_s: float, broker: str, out_dir: Path | None
) -> int:
    kind, notice = choose_broker(broker)
    state_dir = Path(tempfile.mkdtemp(prefix="scorer-drift-demo-"))
    out_dir = out_dir or state_dir
    say(notice)
    stack = stack_up(state_dir, broker_kind=kind)
    settings = Settings(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url).replace(
        **LOOP
    )
    env = scorer_env(
        kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, log_format="json"
    ) | {env_name(name): str(value) for name, value in LOOP.items()}
    processes: list[subprocess.Popen[bytes]] = []
    stream: Stream | None = None
    reader: PredictionReader | None = None
    try:
        stream = Stream(settings, rate, label_delay_s)
        reader = PredictionReader(settings)
        _publish_v1(state_dir, env)
        processes = [
            start_module(["worker", command], env | {"SCORER_METRICS_PORT": "0"}, state_dir / log)
            for command, log in (("run", "worker.log"), ("monitor", "monitor.log"),
                                 ("retrain", "retrain.log"))
        ]  # fmt: skip
        say("$ scorer run & scorer monitor & scorer retrain &   # logs in " + str(state_dir))
        stream.start()
        client = connect_redis(settings)
        registry = Registry.for_settings(client, settings)
        _loop(registry, stream, change_after_s)
        log = CandidateLog(client, settings.registry_prefix)
        return _report(Run(registry, log, stream, reader), out_dir)
    finally:
        for process in processes:
            stop_process(process)
        if stream is not None:
            stream.stop()
        if reader is not None:
            reader.stop()
        stack_down(state_dir)
        say("stack stopped")


class PredictionReader:
    """Every prediction on the output topic, from a thread: what each version scored, live."""

    def __init__(self, settings: Settings) -> None:
        self._consumer = KafkaConsumer(
            settings.output_topic,
            **client_options(settings),
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        self.scored: list[Scored] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            for records in self._consumer.poll(timeout_ms=200).values():
                for record in records:
                    p = orjson.loads(record.value)
                    self.scored.append(
                        Scored(p["event_id"], p["model_version"], p["arm"], p["score"])
                    )

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)
        self._consumer.close()


def _publish_v1(state_dir: Path, env: dict[str, str]) -> None:
    rows = np.random.default_rng(1).normal(size=(20000, len(FEATURES))).round(4)
    clicks = np.random.default_rng(2).random(len(rows)) < click_probability(rows)
    path = state_dir / "v1.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(rows, clicks), path)
    note = "fitted to the truth before the change"
    scorer(env, "model", "publish", str(path), "--version", "v1", "--features",
           ",".join(FEATURES), "--note", note, "--activate")  # fmt: skip


def _loop(registry: Registry, stream: Stream, change_after_s: float) -> None:
    """Change the truth, wait for an automatic promotion, then let the new primary settle."""
    wait_for(lambda: stream.elapsed() >= change_after_s, change_after_s + 30, "the change")
    stream.drift(DRIFTED_WEIGHTS)
    say(f"the truth changes at {stream.drifted_at:.1f} s: f0's and f19's weights change sign")

    def promoted() -> bool:
        return any(_automatic_promotions(registry))

    wait_for(promoted, 600, "an automatic promotion")
    promoted_at = stream.elapsed()
    say(f"promoted at {promoted_at:.1f} s; measuring the new primary for {SETTLE_S:g} s")
    wait_for(lambda: stream.elapsed() >= promoted_at + SETTLE_S, SETTLE_S + 30, "the settle")


def _automatic_promotions(registry: Registry) -> list[dict[str, Any]]:
    return [
        c
        for c in registry.changes(1000)
        if c["action"] == "promote" and c["by"] == "scorer-monitor"
    ]


def auc_by_bucket(
    scored: list[Scored], clicks: dict[str, tuple[float, int]], bucket_s: float
) -> dict[tuple[str, str], list[tuple[float, float, int]]]:
    """(version, arm) -> [(bucket start, AUC, events)] over the events sent in each bucket."""
    grouped: dict[tuple[str, str, int], tuple[list[float], list[int]]] = defaultdict(
        lambda: ([], [])
    )
    for p in scored:
        if p.event_id not in clicks:
            continue
        sent_at, click = clicks[p.event_id]
        scores, labels = grouped[(p.version, p.arm, int(sent_at // bucket_s))]
        scores.append(p.score)
        labels.append(click)
    series: dict[tuple[str, str], list[tuple[float, float, int]]] = defaultdict(list)
    for (version, arm, bucket), (scores, labels) in sorted(grouped.items()):
        if 0 < sum(labels) < len(labels):
            auc = float(roc_auc_score(labels, scores))
            series[(version, arm)].append((bucket * bucket_s, auc, len(labels)))
    return dict(series)


def offline_auc(seed: int = 11) -> float:
    """What a logistic regression fitted offline to 20,000 post-change rows reaches on 20,000
    more: the figure live AUC should come back to."""
    rng = np.random.default_rng(seed)
    train, test = (rng.normal(size=(20000, len(FEATURES))).round(4) for _ in range(2))
    y_train, y_test = (
        rng.random(len(rows)) < click_probability(rows, DRIFTED_WEIGHTS) for rows in (train, test)
    )
    model = LogisticRegression(max_iter=500).fit(train, y_train)
    return float(roc_auc_score(y_test, model.predict_proba(test)[:, 1]))


def _live_auc(
    scored: list[Scored], clicks: dict[str, tuple[float, int]], since: float, version: str
) -> tuple[float, int]:
    """The version's AUC as primary over the events sent since `since`."""
    pairs = [
        (p.score, clicks[p.event_id][1])
        for p in scored
        if p.version == version
        and p.arm == "primary"
        and p.event_id in clicks
        and clicks[p.event_id][0] >= since
    ]
    scores, labels = zip(*pairs, strict=True) if pairs else ((), ())
    return float(roc_auc_score(labels, scores)), len(pairs)


@dataclass(frozen=True)
class Run:
    """What the report reads."""

    registry: Registry
    log: CandidateLog
    stream: Stream
    reader: PredictionReader


def _report(run: Run, out_dir: Path) -> int:
    registry, stream, reader = run.registry, run.stream, run.reader
    time.sleep(2 * stream.delay_s + 1)  # the last clicks in, the last predictions read
    scored, clicks = list(reader.scored), dict(stream.clicks)
    changed_at = stream.drifted_at
    assert changed_at is not None
    promotions = list(reversed(_automatic_promotions(registry)))  # oldest first
    primary = promotions[-1]["version"]
    promoted = [p["at"] - stream.start_wall for p in promotions]
    took = promoted[0] - changed_at  # until the first better version was live
    print("\n=== drift demo report ===")
    late = f"clicks {stream.delay_s:g} s late"
    print(f"events sent            {stream.sent} at {stream.rate:g}/s, {late}")
    print(f"truth changed at       {changed_at:.1f} s (f0's and f19's weights change sign)")
    for promotion in promotions:
        at = promotion["at"] - stream.start_wall
        print(f"promoted               {promotion['version']} at {at:.1f} s, "
              f"{at - changed_at:.1f} s after the change")  # fmt: skip
    _print_counts(scored)
    _print_candidates(run.log, stream.start_wall)
    series = auc_by_bucket(scored, clicks, BUCKET_S)
    print(f"\nAUC per {BUCKET_S:g}-second bucket of events (version/arm: from s:AUC)")
    for (version, arm), points in series.items():
        shown = "  ".join(f"{start:.0f}:{auc:.3f}" for start, auc, _ in points)
        print(f"  {version}/{arm}: {shown}")
    since = promotions[-1]["at"] - stream.start_wall + stream.delay_s
    live, events = _live_auc(scored, clicks, since, primary)
    offline = offline_auc()
    print(
        f"\nlive AUC of {primary} as primary over {events} events after its promotion: {live:.3f}"
    )
    print(f"offline AUC, a model fitted to 20,000 post-change rows: {offline:.3f}")
    ok = abs(offline - live) <= 0.02 and took <= 180
    print(f"gap {offline - live:+.3f} (target: within 0.02); a better version live within 180 s "
          f"of the change: {took <= 180} ({took:.1f} s)")  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    chart = out_dir / "drift-demo.png"
    draw_chart(series, changed_at, promoted, offline, chart)
    print(f"chart                  {chart}")
    print(f"result                 {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


def _print_counts(scored: list[Scored]) -> None:
    print("\nevents scored per version and arm")
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for p in scored:
        counts[(p.version, p.arm)] += 1
    for (version, arm), n in sorted(counts.items()):
        print(f"  {version:<24}{arm:<9}{n:>8}")


def _print_candidates(log: CandidateLog, start_wall: float) -> None:
    """Every candidate the retrainer fitted, oldest first, and what became of it."""
    print("\ncandidates the retrainer fitted (s since the stream began)")
    for record in reversed(log.recent(1000)):
        holdout = record.get("training", {}).get("holdout", {})
        figures = ""
        if holdout:
            ours, theirs = holdout["candidate"]["auc"], holdout["primary"]["auc"]
            figures = f"holdout AUC {ours:.3f} vs primary {theirs:.3f}"
        outcome = (
            "published as canary"
            if record["outcome"] == "published"
            else f"not published: {record['why']}: {record['detail']}"
        )
        print(
            f"  {record['at'] - start_wall:7.1f}  {record['candidate']}  {figures}  {outcome[:90]}"
        )


def draw_chart(
    series: dict[tuple[str, str], list[tuple[float, float, int]]],
    changed_at: float,
    promoted: list[float],
    offline: float,
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 5))
    for (version, arm), points in series.items():
        starts = [start + BUCKET_S / 2 for start, _, _ in points]
        axes.plot(starts, [auc for _, auc, _ in points], marker="o", label=f"{version} ({arm})")
    axes.axvline(changed_at, color="red", linestyle="--", label="truth changes")
    for i, at in enumerate(promoted):
        label = "automatic promotion" if i == 0 else None
        axes.axvline(at, color="green", linestyle="--", label=label)
    axes.axhline(offline, color="grey", linestyle=":", label="offline, post-change model")
    axes.set_xlabel("seconds since the stream began (events by send time)")
    axes.set_ylabel(f"live AUC per {BUCKET_S:g} s of events")
    axes.set_title("scorer demo --scenario drift: AUC over time per version")
    axes.legend(loc="lower left", fontsize="small")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
