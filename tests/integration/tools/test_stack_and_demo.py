"""`scorer stack` and `scorer demo` as a user runs them, with the usual ports taken."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import run_scorer

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


def test_stack_up_uses_free_ports_and_down_stops_exactly_its_processes(
    tmp_path: Path, usual_ports_taken: None
) -> None:
    up = run_scorer(None, "stack", "up", "--state-dir", "state", cwd=tmp_path)
    assert up.returncode == 0, up.stderr
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
    # 6 s of load: the activation (a CLI process) lands at about 2 s, with time to spare
    # however fast the workers drain what came before it
    done = run_scorer(None, "demo", "--events", "6000", "--rate", "1000", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = done.stdout[done.stdout.index("=== demo report ===") :]
    assert "every event_id accounted    yes" in report
    assert "workers exited with         [0, 0]" in report
    assert "v1: " in report and "v2: " in report
    assert "result                      OK" in report
