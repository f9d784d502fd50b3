"""One worker process's parts, built and wired in start-up order, torn down in stop order."""

from __future__ import annotations

import os
import socket
import threading
import time

import structlog

from worker.control import ModelReloader
from worker.kafka_io import build_consumer, build_producer, connect_redis, ensure_topics
from worker.loop import ScoringLoop
from worker.models import LoadedModel, ModelHolder
from worker.registry import Registry
from worker.settings import Settings

log = structlog.get_logger(__name__)

_WAITING_LOG_INTERVAL_S = 10.0


class Worker:
    """Start: Redis → topics → reloader (loads the active version) → wait for a model → consume.

    Stop (from `stop`, any thread): the loop finishes and commits its batch, leaves the group
    and closes the producer; then the reloader and its control consumer stop.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.holder = ModelHolder()
        self.loop: ScoringLoop | None = None
        self.reloader: ModelReloader | None = None
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        settings = self.settings
        registry = Registry(connect_redis(settings), settings.registry_prefix, settings.active_key)
        ensure_topics(settings)
        self.reloader = ModelReloader(
            settings, registry, self.holder, build_consumer(settings, group_id=None)
        )
        self.reloader.start()
        log.info("worker.started", worker_id=self.worker_id, settings=settings.redacted())
        try:
            if self._wait_for_model() is None:
                return
            self.loop = ScoringLoop(
                settings,
                build_consumer(settings),
                build_producer(settings),
                self._current_model,
                self._stopping,
            )
            self.loop.run()
        finally:
            self.reloader.stop()
            log.info("worker.stopped", worker_id=self.worker_id)

    def _wait_for_model(self) -> LoadedModel | None:
        """Not ready and not consuming until a version is active and loaded."""
        next_log = time.monotonic()
        while not self._stopping.is_set():
            model = self.holder.wait_loaded(0.25)
            if model is not None:
                return model
            if time.monotonic() >= next_log:
                log.warning(
                    "worker.waiting_for_model",
                    active_key=self.settings.active_key,
                    last_error=self.reloader.last_error if self.reloader else None,
                )
                next_log = time.monotonic() + _WAITING_LOG_INTERVAL_S
        return None

    def _current_model(self) -> LoadedModel:
        model = self.holder.current()
        assert model is not None, "the loop starts only after a model is loaded"
        return model
