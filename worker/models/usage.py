"""What each version met on live data: rows it was given, rows it failed to score, and (with a
reference profile) how many of its rows and scores fell in each reference bin.

The loop adds every delivered batch to a `UsageTally` (a few dict updates); a `UsageFlusher`
thread beside it moves the sums to Redis every `worker_heartbeat_s`, where every worker's add
up (HINCRBY) in buckets of `BUCKET_S` seconds:

  <registry_prefix>:quality:usage:<version>:<bucket>   hash: rows, failed, b<i> (bin counts)
  <registry_prefix>:quality:usage:versions             sorted set: version -> last written

kept for `drift_window_s`. The monitor reads them back (`UsageStore.read`) for the drift
figures and the error-rate guard. A flush that fails keeps its sums for the next one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import redis
import structlog

from worker.settings import Settings

log = structlog.get_logger(__name__)

BUCKET_S = 10


@dataclass
class Usage:
    rows: int = 0
    failed: int = 0  # rows the version raised on (scoring_failed)
    bins: np.ndarray | None = None  # reference-bin counts, when the version has a profile

    def add(self, other: Usage) -> None:
        self.rows += other.rows
        self.failed += other.failed
        if other.bins is not None:
            self.bins = other.bins.copy() if self.bins is None else _sum(self.bins, other.bins)


def _sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bin counts read back from Redis end at their last non-zero bin: pad the shorter."""
    if len(a) < len(b):
        a, b = b, a
    total = a.copy()
    total[: len(b)] += b
    return total


class UsageTally:
    """Sums per version, added to by the loop and drained by the flusher (any threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sums: dict[str, Usage] = {}

    def add(self, usage: dict[str, Usage]) -> None:
        with self._lock:
            for version, part in usage.items():
                self._sums.setdefault(version, Usage()).add(part)

    def drain(self) -> dict[str, Usage]:
        with self._lock:
            sums, self._sums = self._sums, {}
        return sums


@dataclass
class UsageWindow:
    """A version's usage summed over buckets, newest first as read."""

    rows: int = 0
    failed: int = 0
    bins: np.ndarray | None = None
    buckets: list[Usage] = field(default_factory=list)  # newest first

    def newest(self, rows: int) -> Usage:
        """The newest buckets that together hold at least `rows` rows (all if fewer)."""
        total = Usage()
        for bucket in self.buckets:
            total.add(Usage(bucket.rows, bucket.failed))
            if total.rows >= rows:
                break
        return total


class UsageStore:
    def __init__(self, client: redis.Redis, registry_prefix: str, window_s: float) -> None:
        self._redis = client
        self._prefix = f"{registry_prefix}:quality:usage"
        self.window_s = window_s
        self._versions_key = f"{self._prefix}:versions"

    @classmethod
    def for_settings(cls, client: redis.Redis, settings: Settings) -> UsageStore:
        return cls(client, settings.registry_prefix, settings.drift_window_s)

    def write(self, sums: dict[str, Usage], now: float) -> None:
        bucket = int(now // BUCKET_S)
        ttl = int(self.window_s + 3 * BUCKET_S)
        # one MULTI/EXEC: a flush lands whole or not at all, so a retried one counts once
        pipe = self._redis.pipeline(transaction=True)
        for version, usage in sums.items():
            key = f"{self._prefix}:{version}:{bucket}"
            pipe.hincrby(key, "rows", usage.rows)
            if usage.failed:
                pipe.hincrby(key, "failed", usage.failed)
            if usage.bins is not None:
                for index in np.flatnonzero(usage.bins).tolist():
                    pipe.hincrby(key, f"b{index}", int(usage.bins[index]))
            pipe.expire(key, ttl)
            pipe.zadd(self._versions_key, {version: now}, gt=True)  # a late flush: keep the newest
        pipe.zremrangebyscore(self._versions_key, "-inf", now - self.window_s)
        pipe.execute()

    def versions(self, now: float) -> list[str]:
        """Versions given rows within the window (a version just aborted, too)."""
        names = self._redis.zrangebyscore(self._versions_key, now - self.window_s, "+inf")
        return sorted(name.decode() if isinstance(name, bytes) else str(name) for name in names)

    def read(self, version: str, now: float, since: float = 0.0) -> UsageWindow:
        """The buckets of the last window_s, or from the one holding `since` if later."""
        newest = int(now // BUCKET_S)
        oldest = max(newest - int(self.window_s // BUCKET_S), int(since // BUCKET_S))
        buckets = range(newest, oldest - 1, -1)
        pipe = self._redis.pipeline(transaction=False)
        for number in buckets:
            pipe.hgetall(f"{self._prefix}:{version}:{number}")
        window, total = UsageWindow(), Usage()
        for raw in pipe.execute():
            if raw:
                window.buckets.append(_decode(raw))
                total.add(window.buckets[-1])
        window.rows, window.failed, window.bins = total.rows, total.failed, total.bins
        return window


def _decode(raw: dict[bytes, bytes]) -> Usage:
    fields = {key.decode(): int(value) for key, value in raw.items()}
    bins = {int(name[1:]): n for name, n in fields.items() if name.startswith("b")}
    counts = None
    if bins:
        counts = np.zeros(max(bins) + 1, dtype=np.int64)
        counts[list(bins)] = list(bins.values())
    return Usage(fields.get("rows", 0), fields.get("failed", 0), counts)


class UsageFlusher:
    """Moves the tally to Redis every `interval_s`, and once more at stop."""

    def __init__(self, tally: UsageTally, store: UsageStore, interval_s: float) -> None:
        self._tally = tally
        self._store = store
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="usage-flusher", daemon=True)
        self.failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)
        self.flush()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            self.flush()

    def flush(self) -> None:
        sums = self._tally.drain()
        if not sums:
            return
        try:
            self._store.write(sums, time.time())
        except redis.RedisError as exc:
            self._tally.add(sums)  # kept for the next flush
            if not self.failing:
                log.warning("usage.flush_failed", error=f"{type(exc).__name__}: {exc}")
            self.failing = True
            return
        self.failing = False
