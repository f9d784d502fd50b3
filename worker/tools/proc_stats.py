"""What the benchmark reads from /proc about a process tree: memory, and CPU over a window.

CPU matters here because the broker, the benchmark and the workers share one machine: the
cores a run used tell whether a second process had any left to use.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """The process and all its children, grandchildren included (supervised workers)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += descendants(int(child))
    return found


def _status_kb(pid: int, field_name: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def tree_rss_mb(pid: int) -> float:
    """Largest current RSS among a process and its children (per worker process)."""
    return max(_status_kb(p, "VmRSS") for p in descendants(pid)) / 1024


def tree_peak_rss_mb(pid: int) -> float:
    return max(_status_kb(p, "VmHWM") for p in descendants(pid)) / 1024


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of one process, all threads; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S  # utime, stime


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuWindow:
    """Cores used between `start` and the last `sample`, by a contender's process tree, by the
    broker (when its pid is known) and by this process (the benchmark's own reader).

    Each process's last reading is kept, so a process that exits before the window closes
    still counts up to its last sample."""

    contender_pid: int
    broker_pid: int | None = None
    _first: dict[int, float] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)
    _started_at: float = 0.0
    _sampled_at: float = 0.0
    _own_first: float = 0.0
    _own_last: float = 0.0

    @property
    def started(self) -> bool:
        return self._started_at > 0

    def start(self) -> None:
        self._read()
        self._first = dict(self._last)
        self._started_at = self._sampled_at
        self._own_first = self._own_last

    def sample(self) -> None:
        if self.started:
            self._read()

    def cores(self) -> dict[str, float]:
        wall = self._sampled_at - self._started_at
        if wall <= 0:
            return {}

        def used(pids: list[int]) -> float:
            return sum(self._last[p] - self._first.get(p, self._last[p]) for p in pids) / wall

        contender = [p for p in self._last if p != self.broker_pid]
        cores = {"contender": used(contender), "bench": (self._own_last - self._own_first) / wall}
        if self.broker_pid is not None:
            cores["broker"] = used([self.broker_pid])
        return cores

    def _read(self) -> None:
        pids = descendants(self.contender_pid)
        if self.broker_pid is not None:
            pids.append(self.broker_pid)
        for pid in pids:
            seconds = cpu_seconds(pid)
            if seconds is not None:
                self._last[pid] = seconds
        self._own_last = own_cpu_seconds()
        self._sampled_at = time.monotonic()
