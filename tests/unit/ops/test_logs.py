"""Process-wide log fields: every line carries them, whichever thread writes it."""

from __future__ import annotations

import threading
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest

from worker.ops import logs


@pytest.fixture(autouse=True)
def no_process_fields() -> Iterator[None]:
    saved = dict(logs._process_fields)
    logs._process_fields.clear()
    yield
    logs._process_fields.clear()
    logs._process_fields.update(saved)


def test_bound_fields_reach_events_from_any_thread_and_never_override_the_events_own() -> None:
    logs.bind_process_fields(worker_id="host-1-abc")
    seen: list[MutableMapping[str, Any]] = []

    def log_from_another_thread() -> None:
        seen.append(logs.add_process_fields(None, "info", {"event": "heartbeat.failed"}))

    thread = threading.Thread(target=log_from_another_thread)
    thread.start()
    thread.join()
    assert seen == [{"event": "heartbeat.failed", "worker_id": "host-1-abc"}]
    explicit = logs.add_process_fields(None, "info", {"event": "x", "worker_id": "other"})
    assert explicit["worker_id"] == "other"


def test_without_bound_fields_events_are_unchanged() -> None:
    assert logs.add_process_fields(None, "info", {"event": "x"}) == {"event": "x"}
