"""`scorer retrain`: feature events (input topic) joined to their labels in Redis, a bounded
training window, and candidates fitted beside the join loop (retraining.py).

The join loop and the process around it are process.py's, in the retrainer's own consumer group
(retrain_group_id), so it reads every event whatever the workers do; a fit runs on the thread
beside the loop, so polling, and the group membership, go on while it fits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
import structlog

from worker.errors import ConfigError, ServiceUnavailable
from worker.lifecycle.metrics import RetrainMetrics
from worker.lifecycle.process import Apply, JoinProcess
from worker.lifecycle.records import SourceRecord, decode_training, sampled
from worker.lifecycle.retraining import Trainer
from worker.lifecycle.training_rows import TrainingStore
from worker.models.registry import Registry
from worker.settings import Settings
from worker.stream.records import event_reader

log = structlog.get_logger(__name__)


class Retrainer(JoinProcess):
    kind = "retrain"

    def __init__(self, settings: Settings) -> None:
        if not settings.allow_pickle:
            raise ConfigError(
                "scorer retrain clones the active estimator from its joblib bytes: run it with "
                "allow_pickle = true (retrain_format = onnx still publishes candidates that "
                "pickle-free workers load)"
            )
        self.metrics = RetrainMetrics()
        super().__init__(
            settings, self.metrics.registry, self.metrics.ready, self.metrics.redis_errors
        )
        self.trainer: Trainer | None = None
        # the input topic's events as the workers read them: JSON, or registry records
        self._reader = event_reader(settings.input_format, settings.schema_registry_url)

    @property
    def group_id(self) -> str:
        return self.settings.retrain_group_id

    @property
    def topics(self) -> list[str]:
        return [self.settings.input_topic, self.settings.labels_topic]

    @property
    def interval_s(self) -> float:
        return self.settings.quality_interval_s

    def prepare(self, client: redis.Redis) -> tuple[Apply, Callable[[], None]]:
        store = TrainingStore.for_settings(client, self.settings)
        registry = Registry.for_settings(client, self.settings)
        self.trainer = Trainer(
            client, store, registry, self.settings, metrics=self.metrics, announce=self.announce
        )
        return (lambda records: self._apply(store, records)), self.trainer.check

    def _apply(self, store: TrainingStore, records: list[Any]) -> bool:
        """Decode and join one batch; False if Redis did not take it, or the schema registry
        could not be reached for the schemas of its events (read again, then)."""
        labels_topic = self.settings.labels_topic
        try:
            self._reader.prepare([r.value for r in records if r.topic != labels_topic])
        except ServiceUnavailable as exc:
            log.warning("retrain.schema_registry_unavailable", error=str(exc))
            return False
        batch = decode_training(
            (SourceRecord(r.topic, r.partition, r.offset, r.value, r.timestamp) for r in records),
            labels_topic,
            self.settings.max_event_bytes,
            self._reader,
        )
        percent = self.settings.retrain_sample_percent
        rows = [row for row in batch.halves if sampled(row.event_id, percent)]
        labels = [label for label in batch.labels if sampled(label.event_id, percent)]
        try:
            joined = store.add(rows, labels, time.time())
        except redis.RedisError as exc:
            self.redis_failed("retrain.redis_unavailable", exc)
            return False
        self.redis_ok()
        # once the batch is in: a batch read again is not counted twice
        self.count_rejects(batch.rejects, self.metrics.malformed)
        self.metrics.records.labels("feature").inc(len(batch.halves))
        self.metrics.records.labels("label").inc(len(batch.labels))
        self.metrics.joined.inc(joined)
        return True
