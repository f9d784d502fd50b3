"""`scorer stack` and `scorer demo` as a user runs them, with the usual ports taken."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import run_scorer
from worker.tools import apache_kafka
from worker.tools.stack import BROKER_NAMES

pytestmark = pytest.mark.integration


@pytest.fixture
def usual_ports_taken() -> Iterator[None]:
    """Hold 9092 and 6379 if nothing else does, as on a machine running Kafka and Redis."""
    held = []
    for port in (9092, 6379):
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
            held.append(sock)
        except OSError:
            sock.close()  # already taken by something else: just as good
    yield
    for sock in held:
        sock.close()


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split(") ", 1)[1][0] != "Z"


@pytest.mark.parametrize("broker", ["kafka", "tansu"])
def test_stack_up_uses_free_ports_and_down_stops_exactly_its_processes(
    tmp_path: Path, usual_ports_taken: None, broker: str
) -> None:
    if broker == "kafka" and apache_kafka.unavailable_reason():
        pytest.skip(str(apache_kafka.unavailable_reason()))
    up = run_scorer(None, "stack", "up", "--state-dir", "state", "--broker", broker, cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    assert up.stdout.splitlines()[0] == f"# broker: {BROKER_NAMES[broker]}"
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in up.stdout.splitlines()
        if line.startswith("export ")
    )
    assert not exports["SCORER_KAFKA_BOOTSTRAP"].endswith(":9092")
    assert not exports["SCORER_REDIS_URL"].startswith("redis://127.0.0.1:6379/")
    state = (tmp_path / "state/stack.json").read_text()
    pids = [int(word) for word in up.stdout.split() if word.isdigit()][:2]
    try:
        assert all(alive(pid) for pid in pids), state
        assert redis.Redis.from_url(exports["SCORER_REDIS_URL"]).ping()
        host, port = exports["SCORER_KAFKA_BOOTSTRAP"].split(":")
        socket.create_connection((host, int(port)), timeout=2).close()
        again = run_scorer(None, "stack", "up", "--state-dir", "state", cwd=tmp_path)
        assert again.returncode == 2 and "already up" in again.stderr
    finally:
        down = run_scorer(None, "stack", "down", "--state-dir", "state", cwd=tmp_path)
    assert down.returncode == 0 and "stack stopped" in down.stdout
    assert not any(alive(pid) for pid in pids)
    assert (
        "no stack was running"
        in run_scorer(None, "stack", "down", "--state-dir", "state", cwd=tmp_path).stdout
    )


def test_without_java_kafka_is_a_one_line_error_and_auto_takes_tansu(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCORER_")}
    env.pop("JAVA_HOME", None)
    env["PATH"] = str(Path(sys.executable).parent)  # python, not java

    def stack(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "worker", "stack", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    refused = stack("up", "--broker", "kafka", "--state-dir", "s")
    assert refused.returncode == 2
    assert refused.stderr == (
        "scorer: Apache Kafka needs Java 17 or newer: no `java` on PATH or in JAVA_HOME\n"
    )
    fetched = stack("fetch-kafka", "--if-possible")
    assert fetched.returncode == 0 and fetched.stdout.count("\n") == 1
    assert "the embedded stack uses Tansu" in fetched.stdout
    auto = stack("up", "--broker", "auto", "--state-dir", "s")
    try:
        assert auto.returncode == 0, auto.stderr
        assert auto.stdout.splitlines()[0].startswith("# broker: Tansu (Apache Kafka needs Java")
    finally:
        assert stack("down", "--state-dir", "s").returncode == 0


def test_stack_up_on_a_taken_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = run_scorer(
            None, "stack", "up", "--state-dir", "s", "--kafka-port", str(port), cwd=tmp_path
        )
    assert done.returncode == 2
    assert done.stderr == f"scorer: port {port} is already in use on 127.0.0.1\n"


def test_demo_tells_the_whole_story_and_accounts_for_every_event(tmp_path: Path) -> None:
    # 9 s of load: the promotion is issued at 3 s and its CLI process takes 1-3 s on a
    # loaded 2-core machine (at 6 s of load it once landed after the last event)
    done = run_scorer(None, "demo", "--events", "9000", "--rate", "1000", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = done.stdout[done.stdout.index("=== demo report ===") :]
    assert "every event_id accounted    yes" in report
    assert "workers exited with         [0, 0]" in report
    assert "v1: " in report and "v2: " in report
    for arm in ("v1 primary: ", "v2 canary: ", "v2 primary: ", "v3 shadow: "):
        assert arm in report
    assert "result                      OK" in report


def test_the_ctr_demo_scores_each_pipeline_as_its_own_predict_proba(tmp_path: Path) -> None:
    """Pipelines (a), (b) and (c) published with their kinds learnt, CTR events with missing
    values and wrong ones streamed: each version's scores equal its Pipeline's."""
    done = run_scorer(
        None, "demo", "--scenario", "ctr", "--events", "9000", "--rate", "1000", cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = done.stdout[done.stdout.index("=== demo report ===") :]
    assert "every event_id accounted    yes" in report
    gaps = re.findall(r"(v\d) against its Pipeline +largest score difference (\S+)", report)
    assert [v for v, _ in gaps] == ["v1", "v2", "v3"]
    assert all(float(gap) <= 1e-9 for _, gap in gaps)
    assert "result                      OK" in report
