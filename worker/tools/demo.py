"""`scorer demo`: the whole story on the embedded stack, with the real commands, then a report.

Stack up → train three models → publish v1 (active), v2 and v3 → v2 as a 20 % canary, v3 as a
shadow → two `scorer run` processes → `scorer loadgen` streams events → `scorer model
promote` (v2) mid-stream → collect every prediction, shadow prediction and dead-letter →
report → stop everything it started.

Two casts: the story's (20 numbers; logistic regression, gradient boosting) and the CTR one's
(`--scenario ctr`: 13 counts and 26 hashed categories with missing values; Pipelines (a), (b)
and (c) of ctr.py, their kinds learnt at publish), whose report adds each version's scores
against the Pipeline's own on the same events and its AUC against the drawn clicks.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import orjson

from worker.errors import ServiceUnavailable
from worker.infra.clients import topic_reader
from worker.settings import Settings, env_name
from worker.tools import ctr
from worker.tools.processes import scorer_env, start_module, stop_process, wait_for
from worker.tools.stack import LOOPBACK, choose_broker, free_port, stack_down, stack_up
from worker.tools.synthetic import FEATURES, train
from worker.tools.worker_logs import ANY, activation_time, first_times

N_WORKERS = 2
CANARY_PERCENT = 20
BAD_FRACTION = 0.01


@dataclass(frozen=True)
class Cast:
    """What a demo run publishes (v1 active, v2 canary, v3 shadow) and streams."""

    models: tuple[tuple[str, Callable[[], Any], str], ...]  # version, fit, note
    publish_args: tuple[str, ...]  # beyond the file and version
    profile: str  # loadgen's

    def fitted(self) -> dict[str, Any]:
        return {version: fit() for version, fit, _ in self.models}


STORY = Cast(
    (
        ("v1", lambda: train("logistic", seed=1), "logistic regression"),
        ("v2", lambda: train("gbm", seed=2), "gradient boosting"),
        ("v3", lambda: train("logistic", seed=3), "logistic regression, other sample"),
    ),
    # the gradient boosting could take missing values; the story shows them dead-lettered
    ("--features", ",".join(FEATURES), "--missing", "reject"),
    "ads",
)
CTR = Cast(
    (
        ("v1", lambda: ctr.train_ctr("ctr-onehot", seed=1), "(a) one-hot + logistic regression"),
        ("v2", lambda: ctr.train_ctr("ctr-hgb", seed=2), "(b) ordinal + gradient boosting"),
        ("v3", lambda: ctr.train_ctr("ctr-hashed", seed=3), "(c) hashed + logistic regression"),
    ),
    (),  # the kinds and the missing values are learnt from each Pipeline
    "ctr",
)


@dataclass
class Collected:
    """What downstream saw: predictions by event_id, and dead-lettered keys."""

    versions: dict[str, str] = field(default_factory=dict)
    arms: Counter[tuple[str, str]] = field(default_factory=Counter)  # first prediction's
    shadow_ids: set[str] = field(default_factory=set)
    first_scored_at: dict[tuple[str, str], float] = field(default_factory=dict)
    predictions: int = 0
    dead_letters: set[str] = field(default_factory=set)
    dead_letter_records: int = 0
    scores: dict[tuple[str, str], float] = field(default_factory=dict)  # (version, event_id)

    @property
    def seen(self) -> int:
        return len(self.versions) + len(self.dead_letters)


def run_demo(
    settings: Settings, events: int, rate: float, broker: str = "auto", cast: Cast = STORY
) -> int:
    kind, notice = choose_broker(broker)
    state_dir = Path(tempfile.mkdtemp(prefix="scorer-demo-"))
    say(notice)
    say(f"starting the embedded stack (state and logs in {state_dir})")
    stack = stack_up(state_dir, broker_kind=kind)
    env = scorer_env(
        kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, log_format="json"
    )
    demo_settings = Settings(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        models = _publish_models(state_dir, env, cast)
        workers = [_start_worker(state_dir, env, i) for i in range(N_WORKERS)]
        wait_for(
            lambda: (
                len(first_times(_logs(state_dir), "partitions.assigned", partitions=ANY))
                == N_WORKERS
            ),
            60,
            f"both workers to load v1 and join the group (logs in {state_dir})",
        )
        collected, sent, activated_at, exit_codes = _stream(
            demo_settings, env=env, workers=workers, events=events, rate=rate, cast=cast
        )
        extra = _ctr_lines(collected, models, sent["sent"]) if cast is CTR else []
        return _report(state_dir, sent, collected, activated_at, exit_codes, extra=extra)
    finally:
        for worker in workers:
            stop_process(worker)
        stack_down(state_dir)
        say("stack stopped")


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def scorer(env: dict[str, str], *args: str, capture: bool = False) -> str:
    """Run a real `scorer` command, showing it as an operator would type it."""
    say("$ scorer " + " ".join(args))
    done = subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env,
        check=True,
        stdout=subprocess.PIPE if capture else None,
        text=True,
    )
    return done.stdout or ""


def _publish_models(state_dir: Path, env: dict[str, str], cast: Cast) -> dict[str, Any]:
    say(
        "training "
        + ", ".join(f"{v} ({note})" for v, _, note in cast.models)
        + " on synthetic clicks"
    )
    models = cast.fitted()
    for version, _, note in cast.models:
        path = state_dir / f"{version}.joblib"
        joblib.dump(models[version], path)
        activate = ["--activate"] if version == "v1" else []
        publish = ["publish", str(path), "--version", version, *cast.publish_args]
        scorer(env, "model", *publish, "--note", note, *activate)
    scorer(env, "model", "canary", "v2", "--percent", str(CANARY_PERCENT), "--reason", "demo")
    scorer(env, "model", "shadow", "v3", "--reason", "demo")
    scorer(env, "model", "list")
    return models


def _start_worker(state_dir: Path, env: dict[str, str], index: int) -> subprocess.Popen[bytes]:
    port = free_port()
    log_path = state_dir / f"worker-{index}.log"
    say(f"$ scorer run   # worker {index}: http://{LOOPBACK}:{port}/metrics, log in {log_path}")
    worker_env = env | {env_name("metrics_port"): str(port), env_name("metrics_host"): LOOPBACK}
    return start_module(["worker", "run"], worker_env, log_path)


def _stream(
    settings: Settings,
    *,
    env: dict[str, str],
    workers: list[subprocess.Popen[bytes]],
    events: int,
    rate: float,
    cast: Cast,
) -> tuple[Collected, dict[str, int], float, list[int]]:
    """Stream the events, promote v2 a third of the way through, collect what comes back."""
    collected = Collected()
    stop_collecting = threading.Event()
    collector = threading.Thread(target=_collect, args=(settings, collected, stop_collecting))
    collector.start()
    loadgen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worker",
            "loadgen",
            "--count",
            str(events),
            "--rate",
            str(rate),
            "--bad-fraction",
            str(BAD_FRACTION),
            "--id-prefix",
            "demo",
            "--profile",
            cast.profile,
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    say(
        f"$ scorer loadgen --count {events} --rate {rate:g} --bad-fraction {BAD_FRACTION} "
        f"--profile {cast.profile}"
    )
    # Promote a third of the way through the stream's time, once predictions flow. (Counting
    # a third of the events back instead made the switch late whenever the collector fell
    # behind the workers, sometimes after the last event.)
    streaming_since = time.monotonic()
    wait_for(
        lambda: collected.seen > 0 and time.monotonic() - streaming_since >= events / rate / 3,
        events / rate + 60,
        "the first predictions back",
    )
    activated_at = time.time()
    scorer(env, "model", "promote", "--reason", "demo: v2 did well")
    sent = orjson.loads(loadgen.communicate(timeout=events / rate * 3 + 60)[0].splitlines()[-1])
    try:
        wait_for(lambda: collected.seen >= sent["sent"], 60, "every event back")
    except ServiceUnavailable as exc:
        say(str(exc))  # the report names what is missing
    time.sleep(1.0)  # let any duplicate deliveries arrive too, so the report counts them
    stop_collecting.set()
    collector.join()
    exit_codes = [stop_process(worker) for worker in workers]
    return collected, sent, activated_at, exit_codes


def _collect(settings: Settings, collected: Collected, stop: threading.Event) -> None:
    topics = [settings.output_topic, settings.dlq_topic, settings.shadow_topic]
    consumer = topic_reader(settings, topics)
    while not stop.is_set():
        for tp, records in consumer.poll(timeout_ms=200).items():
            for record in records:
                _note(collected, tp.topic, settings, record)
    consumer.close()


def _note(collected: Collected, topic: str, settings: Settings, record: Any) -> None:
    if topic == settings.dlq_topic:
        collected.dead_letter_records += 1
        collected.dead_letters.add(record.key.decode())
        return
    prediction = orjson.loads(record.value)
    if topic == settings.shadow_topic:
        collected.scores[(prediction["model_version"], prediction["event_id"])] = prediction[
            "score"
        ]
        collected.shadow_ids.add(prediction["event_id"])
        collected.arms[(prediction["model_version"], "shadow")] += 1
        return
    collected.predictions += 1
    version, arm = prediction["model_version"], prediction["arm"]
    collected.scores[(version, prediction["event_id"])] = prediction["score"]
    if prediction["event_id"] not in collected.versions:
        collected.arms[(version, arm)] += 1
    collected.versions[prediction["event_id"]] = version
    collected.first_scored_at.setdefault((version, arm), prediction["scored_at"])


def _report(
    state_dir: Path,
    sent: dict[str, int],
    collected: Collected,
    activated_at: float,
    exit_codes: list[int],
    *,
    extra: list[tuple[str, bool]],
) -> int:
    expected = {f"demo-{i}" for i in range(sent["sent"])}
    scored = set(collected.versions)
    missing = expected - scored - collected.dead_letters
    both = scored & collected.dead_letters
    loaded_v2 = first_times(_logs(state_dir), "model.loaded", model_version="v2")
    activated_at = activation_time(_logs(state_dir), since=0.0, fallback=activated_at)
    per_version = Counter(collected.versions.values())
    arms = collected.arms
    first_v2 = collected.first_scored_at.get(("v2", "primary"))
    before_promote = arms[("v1", "primary")] + arms[("v2", "canary")]
    canary_share = arms[("v2", "canary")] / before_promote if before_promote else 0.0
    ok = (
        {("v1", "primary"), ("v2", "canary"), ("v2", "primary"), ("v3", "shadow")} <= set(arms)
        and collected.shadow_ids <= scored
        and not missing
        and not both
        and len(collected.dead_letters) == sent["bad"]
        and len(loaded_v2) == N_WORKERS
        and exit_codes == [0] * N_WORKERS
        and all(good for _, good in extra)
    )
    lines = [
        "",
        "=== demo report ===",
        f"events sent                 {sent['sent']} ({sent['bad']} malformed on purpose)",
        f"predictions received        {collected.predictions} for {len(scored)} event_ids",
        f"dead-lettered               {collected.dead_letter_records} "
        f"for {len(collected.dead_letters)} event_ids",
        f"duplicates (at-least-once)  {collected.predictions - len(scored)}",
        "per version                 "
        + ", ".join(f"{v}: {n}" for v, n in sorted(per_version.items())),
        "per version and arm         "
        + ", ".join(f"{v} {arm}: {n}" for (v, arm), n in sorted(arms.items())),
        f"canary share before promote {canary_share:.1%} of events "
        f"(route: {CANARY_PERCENT} % of keys)",
        f"shadow predictions (v3)     {len(collected.shadow_ids)} event_ids, on the shadow "
        "topic only",
        "promote → first v2 primary  "
        + (f"{first_v2 - activated_at:.3f} s" if first_v2 else "never"),
        "promote → last worker on v2 "
        + (
            f"{max(loaded_v2) - activated_at:.3f} s ({len(loaded_v2)}/{N_WORKERS} workers)"
            if loaded_v2
            else "never"
        ),
        *(line for line, _ in extra),
        f"workers exited with         {exit_codes} after SIGTERM",
        f"every event_id accounted    {'yes' if not missing and not both else 'NO'}"
        + (f" (missing {len(missing)}, in both {len(both)})" if missing or both else ""),
        f"result                      {'OK' if ok else 'FAILED'}",
    ]
    print("\n".join(lines), flush=True)
    return 0 if ok else 1


def _logs(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob("worker-*.log"))


def _ctr_lines(collected: Collected, models: dict[str, Any], sent: int) -> list[tuple[str, bool]]:
    """Each version's scores against its Pipeline's own predict_proba on the same events (the
    frames loadgen drew them from, made again from the same seeds), and its AUC against the
    clicks drawn from the known probability. (line, whether it holds)"""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    frame = pd.concat(
        [ctr.ctr_frame(min(1000, sent - start), start) for start in range(0, sent, 1000)],
        ignore_index=True,
    )
    drawn = np.concatenate(
        [ctr.clicks(frame.iloc[start : start + 1000], start) for start in range(0, sent, 1000)]
    )
    lines = []
    for version, model in sorted(models.items()):
        rows = [int(e.removeprefix("demo-")) for v, e in collected.scores if v == version]
        if not rows:
            lines.append((f"{version:<28}no predictions", False))
            continue
        ours = np.array([collected.scores[(version, f"demo-{i}")] for i in rows])
        theirs = model.predict_proba(frame.iloc[rows])[:, 1]
        gap = float(np.abs(ours - theirs).max())
        auc = roc_auc_score(drawn[rows], ours)
        lines.append(
            (
                f"{version} against its Pipeline    largest score difference {gap:.1e} over "
                f"{len(rows)} events; AUC {auc:.3f} against the drawn clicks",
                gap <= 1e-9,
            )
        )
    return lines
