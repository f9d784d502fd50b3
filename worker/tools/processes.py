"""Running `scorer` processes from the tooling (demo, bench): environment, start, wait, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from worker.errors import ServiceUnavailable
from worker.settings import ENV_PREFIX, env_name

# Consumer-group timing for the embedded stack, either broker; production keeps the
# configurable defaults. On Tansu a group join takes about half the session timeout, so a
# short one is what makes tests and the demo bearable there; on Apache Kafka it only makes a
# killed worker's partitions move within seconds instead of 45 s.
EMBEDDED_GROUP_TIMING = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "max_poll_interval_ms": 10000,
}


def scorer_env(embedded: bool = True, **settings: object) -> dict[str, str]:
    """This environment without any SCORER_* of the caller's, plus exactly these settings
    (and the embedded broker's group timing), so a tool's processes agree with each other."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    timing = EMBEDDED_GROUP_TIMING if embedded else {}
    env |= {env_name(name): str(value) for name, value in (timing | settings).items()}
    return env


def start_module(
    argv: Sequence[str],
    env: dict[str, str],
    log_path: Path,
) -> subprocess.Popen[bytes]:
    """`python -m ARGV...` (e.g. `worker run`) with its output in a log file."""
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", *argv], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(0.1)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 30) -> int:
    """SIGTERM (a worker then commits and leaves its group), SIGKILL if it does not exit."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
