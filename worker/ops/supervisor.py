"""`scorer run --processes N`: N worker processes in one group under one supervisor.

The supervisor forwards SIGTERM/SIGINT to every child and waits for them (each one finishes
its batch, commits and leaves the group), restarts a child that crashes with backoff, and
gives up with a non-zero exit when children keep crashing.

Identities that must be unique per process (a static member id, a transactional id) get the
child's index appended, so `--processes 4` in a pod named `scorer-0` runs members
`scorer-0-0` .. `scorer-0-3`; a restarted child takes its predecessor's identity back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

import structlog

from worker.infra.retry import backoff_s
from worker.settings import env_name

log = structlog.get_logger(__name__)

CRASH_WINDOW_S = 60.0
MAX_CRASHES_IN_WINDOW = 5
EXIT_CHILDREN_CRASHING = 7


@dataclass
class Child:
    index: int
    process: subprocess.Popen[bytes]
    restarts: int = 0


@dataclass
class Supervisor:
    processes: int
    child_args: Sequence[str]
    metrics_port: int
    identities: Mapping[str, str] = field(default_factory=dict)  # setting -> base value
    stopping: threading.Event = field(default_factory=threading.Event)
    crashes: deque[float] = field(default_factory=deque)

    def spawn(self, index: int) -> subprocess.Popen[bytes]:
        """Each child gets its own HTTP port (metrics_port + index; 0 stays 'any free')."""
        port = self.metrics_port + index if self.metrics_port else 0
        env = os.environ | {env_name("metrics_port"): str(port)}
        identity = [f"{name}={base}-{index}" for name, base in self.identities.items()]
        # A session of its own: a terminal's Ctrl-C reaches only the supervisor, which
        # forwards one SIGTERM (a second signal would make a child exit without committing).
        return subprocess.Popen(
            [sys.executable, "-m", "worker", "run", *self.child_args]
            + [arg for pair in identity for arg in ("--set", pair)],
            env=env,
            start_new_session=True,
        )

    def run(self) -> int:
        children = [Child(i, self.spawn(i)) for i in range(self.processes)]
        log.info(
            "supervisor.started", processes=self.processes, pids=[c.process.pid for c in children]
        )
        while not self.stopping.is_set():
            for child in children:
                code = child.process.poll()
                if code is None or self.stopping.is_set():
                    continue
                if not self._restart(child, code):
                    self._stop_all(children)
                    return EXIT_CHILDREN_CRASHING
            self.stopping.wait(0.2)
        return self._stop_all(children)

    def _restart(self, child: Child, code: int) -> bool:
        now = time.monotonic()
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > CRASH_WINDOW_S:
            self.crashes.popleft()
        if len(self.crashes) > MAX_CRASHES_IN_WINDOW:
            log.error("supervisor.giving_up", crashes=len(self.crashes), window_s=CRASH_WINDOW_S)
            return False
        delay = backoff_s(child.restarts, base_s=0.5, cap_s=10.0)
        log.error("supervisor.child_crashed", index=child.index, exit_code=code, restart_in_s=delay)
        if self.stopping.wait(delay):
            return True
        child.restarts += 1
        child.process = self.spawn(child.index)
        return True

    def _stop_all(self, children: list[Child]) -> int:
        """Forward the stop to every child still running and wait for their clean exits."""
        for child in children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        codes = [child.process.wait() for child in children]
        log.info("supervisor.stopped", exit_codes=codes)
        return 0 if all(code == 0 for code in codes) else 1


def run_supervised(
    processes: int, child_args: Sequence[str], metrics_port: int, identities: Mapping[str, str]
) -> int:
    supervisor = Supervisor(processes, child_args, metrics_port, identities)

    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("supervisor.stopping", signal=signal.Signals(signum).name)
        supervisor.stopping.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return supervisor.run()
