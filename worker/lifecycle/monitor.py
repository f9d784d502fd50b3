"""`scorer monitor`: predictions (output and shadow topics) and labels joined in Redis, each
version's quality, and the guardrails.

The join loop and the process around it are process.py's: the monitor decodes each polled batch
(malformed records counted and logged) and applies it to the shared join. Beside it, every
quality_interval_s: close the join windows that are due (counting drops), compute the report
from the shared windows, publish it as gauges, and let the guardrails act.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
import structlog

from worker.lifecycle.guards import GuardKeeper, current_breaches, decide, unreachable_promotion
from worker.lifecycle.join import JoinStore
from worker.lifecycle.metrics import MonitorMetrics
from worker.lifecycle.process import Apply, JoinProcess
from worker.lifecycle.records import SourceRecord, decode_records
from worker.lifecycle.report import build_report
from worker.models.registry import Registry
from worker.models.usage import UsageStore
from worker.settings import Settings

log = structlog.get_logger(__name__)


class Monitor(JoinProcess):
    kind = "monitor"

    def __init__(self, settings: Settings) -> None:
        self.metrics = MonitorMetrics()
        super().__init__(
            settings, self.metrics.registry, self.metrics.ready, self.metrics.redis_errors
        )
        self.evaluations = 0  # completed evaluations: a test's condition, a debugger's clue

    @property
    def group_id(self) -> str:
        return self.settings.monitor_group_id

    @property
    def topics(self) -> list[str]:
        settings = self.settings
        return [settings.output_topic, settings.shadow_topic, settings.labels_topic]

    @property
    def interval_s(self) -> float:
        return self.settings.quality_interval_s

    def prepare(self, client: redis.Redis) -> tuple[Apply, Callable[[], None]]:
        settings = self.settings
        if why := unreachable_promotion(settings):  # the retrainer may run with another share
            log.warning("monitor.promotion_unreachable", why=why)
        store = JoinStore.for_settings(client, settings)
        usage = UsageStore.for_settings(client, settings)
        registry = Registry.for_settings(client, settings)
        keeper = GuardKeeper(
            client,
            registry,
            settings,
            self.announce,
            lambda action: self.metrics.guard_actions.labels(action).inc(),
        )
        return (
            lambda records: self._apply(store, records),
            lambda: self.evaluate(store, usage, registry, keeper),
        )

    def _apply(self, store: JoinStore, records: list[Any]) -> bool:
        """Decode and join one batch; False if Redis did not take it."""
        batch = decode_records(
            (SourceRecord(r.topic, r.partition, r.offset, r.value) for r in records),
            self.settings.labels_topic,
            self.settings.max_event_bytes,
        )
        try:
            joined = store.add(batch.halves, batch.labels, time.time())
        except redis.RedisError as exc:
            self.redis_failed("monitor.redis_unavailable", exc)
            return False
        self.redis_ok()
        # once the batch is in: a batch read again is not counted twice
        self.count_rejects(batch.rejects, self.metrics.malformed)
        self.metrics.records.labels("prediction").inc(len(batch.halves))
        self.metrics.records.labels("label").inc(len(batch.labels))
        self.metrics.joined.inc(joined)
        return True

    def evaluate(
        self, store: JoinStore, usage: UsageStore, registry: Registry, keeper: GuardKeeper
    ) -> None:
        now = time.time()
        swept = store.sweep(now)
        self.metrics.dropped.labels("unlabelled").inc(swept.unlabelled)
        self.metrics.dropped.labels("unmatched_label").inc(swept.unmatched_labels)
        report = build_report(store, usage, registry, self.settings, now)
        self.metrics.quality.update(report, current_breaches(report, self.settings))
        self.metrics.pending.set(report.joins["pending"])
        decisions = decide(report, self.settings, now, keeper.has_previous())
        for decision in decisions:
            keeper.carry_out(decision)
        self.evaluations += 1
