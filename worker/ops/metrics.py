"""Prometheus metrics of one worker, in its own registry (no process-global state).

Names follow Prometheus conventions: counters end in `_total`, durations in `_seconds`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# `*_created` series double the scrape and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
_BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


KAFKA_OPERATIONS = ("produce", "commit", "poll", "control")
REDIS_OPERATIONS = ("reload_check", "heartbeat")


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_consumed = Counter(
            "scorer_events_consumed_total", "Records read from the input topic", registry=r
        )
        self.predictions = Counter(
            "scorer_predictions_total",
            "Predictions acknowledged by the broker (arm: primary, canary or shadow)",
            ["model_version", "arm"],
            registry=r,
        )
        self.version_scoring = Histogram(
            "scorer_version_scoring_seconds",
            "One version's predict call on one arm of a batch (shadow: its whole cost)",
            ["model_version", "arm"],
            buckets=_BATCH_BUCKETS_S,
            registry=r,
        )
        self.shadow_failures = Counter(
            "scorer_shadow_failures_total",
            "Events a shadow version could not decode or score (never dead-lettered)",
            ["model_version"],
            registry=r,
        )
        self.route_failures = Counter(
            "scorer_route_failures_total",
            "Versions named by the route that failed to load (the route is then not applied)",
            registry=r,
        )
        self.canary_percent = Gauge(
            "scorer_canary_percent", "Share of keys sent to the canary, as applied here", registry=r
        )
        self.dead_letters = Counter(
            "scorer_dead_letters_total",
            "Events sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.batch_events = Histogram(
            "scorer_batch_events",
            "Records per polled batch",
            buckets=_BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.batch_scoring = Histogram(
            "scorer_batch_scoring_seconds",
            "Decode, predict and encode time per batch",
            buckets=_BATCH_BUCKETS_S,
            registry=r,
        )
        self.batch_delivery = Histogram(
            "scorer_batch_delivery_seconds",
            "Produce, flush (acks) and commit time per batch",
            buckets=_BATCH_BUCKETS_S,
            registry=r,
        )
        self.end_to_end = BatchHistogram(
            "scorer_end_to_end_latency_seconds",
            "Event ts to the broker's acknowledgement of its prediction",
            buckets=_LATENCY_BUCKETS_S,
        )
        r.register(self.end_to_end)
        self.model_info = Gauge(
            "scorer_model_info",
            "The loaded models (value 1); role: primary, canary or shadow",
            ["version", "sha256", "role"],
            registry=r,
        )
        self.reloads = Counter(
            "scorer_model_reloads_total",
            "Attempts to load a new active version",
            ["result"],
            registry=r,
        )
        self._last_check_at = 0.0
        self.reload_check_age = Gauge(
            "scorer_reload_check_age_seconds",
            "Seconds since the active key was last read successfully",
            registry=r,
        )
        self.reload_check_age.set_function(self._check_age)
        self.consumer_lag = Gauge(
            "scorer_consumer_lag_events",
            "High watermark minus position, per assigned partition",
            ["topic", "partition"],
            registry=r,
        )
        self.partitions_paused = Gauge(
            "scorer_partitions_paused",
            "Assigned partitions paused while a batch is sent again (polling goes on)",
            registry=r,
        )
        self.rebalances = Counter(
            "scorer_rebalances_total",
            "Partition assignment changes seen by the scoring consumer",
            ["event"],
            registry=r,
        )
        self.kafka_errors = Counter(
            "scorer_kafka_errors_total", "Kafka operations that failed", ["operation"], registry=r
        )
        self.redis_errors = Counter(
            "scorer_redis_errors_total", "Redis operations that failed", ["operation"], registry=r
        )
        self.schema_registry_errors = Counter(
            "scorer_schema_registry_errors_total",
            "Schema fetches that failed: the registry could not be reached (the batch waits)",
            registry=r,
        )
        self.transactions = Counter(
            "scorer_transactions_total",
            "Exactly-once: batch transactions committed or aborted",
            ["result"],
            registry=r,
        )
        self.ready = Gauge(
            "scorer_ready",
            "1 while /readyz says ready (a model loaded, partitions assigned)",
            registry=r,
        )
        self.active_key = Gauge(
            "scorer_active_key_info",
            "The version the active key named at the last successful check (value 1)",
            ["version"],
            registry=r,
        )
        # Every labelled series a dashboard or alert reads exists from the start, at 0: "no
        # errors" must not look like "no data".
        for result in ("ok", "failed"):
            self.reloads.labels(result)
        for operation in KAFKA_OPERATIONS:
            self.kafka_errors.labels(operation)
        for operation in REDIS_OPERATIONS:
            self.redis_errors.labels(operation)
        for result in ("committed", "aborted"):
            self.transactions.labels(result)
        for event in ("assigned", "revoked", "lost"):
            self.rebalances.labels(event)

    def _check_age(self) -> float:
        return time.time() - self._last_check_at if self._last_check_at else float("nan")

    def note_reload_check(self, active: str | None) -> None:
        self._last_check_at = time.time()
        self.active_key.clear()
        if active is not None:
            self.active_key.labels(active).set(1)

    def set_serving(self, models: Iterable[tuple[str, str, str]], canary_percent: float) -> None:
        """The versions serving now, as (version, sha256, role)."""
        self.model_info.clear()
        for version, sha256, role in models:
            self.model_info.labels(version, sha256, role).set(1)
        self.canary_percent.set(canary_percent)

    def observe_latencies(self, event_ts: Iterable[float | None], acked_at: float) -> None:
        """One observation per event with a timestamp."""
        stamps = np.array([ts for ts in event_ts if ts is not None], dtype=np.float64)
        self.end_to_end.observe_all(acked_at - stamps)

    def set_lag(self, lags: dict[tuple[str, int], int]) -> None:
        self.consumer_lag.clear()
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)


class BatchHistogram(Collector):
    """A Prometheus histogram that takes a whole batch of observations in one numpy call.

    prometheus_client's `Histogram.observe` costs about 0.6 µs per call, more than the rest of
    an event's scoring; this exposes the same series (`_bucket`, `_count`, `_sum`).
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = np.array([*buckets, float("inf")], dtype=np.float64)
        self._counts = np.zeros(len(self._bounds), dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()  # scrapes come from the HTTP server's thread

    def observe_all(self, values: np.ndarray) -> None:
        if not len(values):
            return
        # side="left": the first bound >= value, as Prometheus buckets are `le` (≤) bounds
        # (a NaN sorts past every bound: it lands in +Inf)
        slots = np.minimum(
            np.searchsorted(self._bounds, values, side="left"), len(self._bounds) - 1
        )
        counts = np.bincount(slots, minlength=len(self._bounds))
        with self._lock:
            self._counts += counts
            self._sum += float(values.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        yield HistogramMetricFamily(
            self._name,
            self._documentation,
            buckets=[
                (floatToGoString(bound), count)  # type: ignore[no-untyped-call]
                for bound, count in zip(self._bounds.tolist(), cumulative, strict=True)
            ],
            sum_value=total,
        )
