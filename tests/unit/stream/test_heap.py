"""settle_heap freezes what start-up left and raises the young-generation threshold."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from worker.stream.heap import settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_start_up_objects_leave_the_collected_generations() -> None:
    survivor = [object() for _ in range(100)]
    settle_heap()
    assert gc.get_freeze_count() >= len(survivor)
    assert not any(obj is survivor for obj in gc.get_objects())
    assert gc.get_threshold()[0] >= 10_000
