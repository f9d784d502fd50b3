"""Usage sums in a real redis-server: every worker's flushes add up per version, the window
reads them back, and a flush during a Redis outage is kept and lands once afterwards."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import RedisServer
from worker.infra.clients import connect_redis
from worker.models.usage import BUCKET_S, Usage, UsageFlusher, UsageStore, UsageTally
from worker.settings import Settings

pytestmark = pytest.mark.integration

NOW = 1_800_000_000.0


def test_flushes_of_several_workers_add_up_within_the_window(settings: Settings) -> None:
    client = connect_redis(settings)
    stores = [UsageStore(client, settings.registry_prefix, 60) for _ in range(2)]
    stores[0].write({"v1": Usage(100, 2, np.array([5, 0, 7]))}, NOW)
    stores[1].write({"v1": Usage(50, 1, np.array([1, 1])), "v2": Usage(9, 0)}, NOW + 1)
    stores[1].write({"v1": Usage(10, 0)}, NOW - 2 * 60)  # outside the window: not counted

    window = stores[0].read("v1", NOW + 2)
    assert (window.rows, window.failed) == (150, 3)
    assert window.bins is not None and window.bins.tolist() == [6, 1, 7]
    assert stores[0].versions(NOW + 2) == ["v1", "v2"]
    assert stores[0].read("v3", NOW).rows == 0
    ttl = client.ttl(f"{settings.registry_prefix}:quality:usage:v1:{int(NOW // BUCKET_S)}")
    assert 60 < ttl <= 60 + 3 * BUCKET_S


def test_a_flush_while_redis_is_away_is_kept_and_lands_once(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    settings = Settings(redis_url=server.url, startup_timeout_s=5)
    store = UsageStore(connect_redis(settings), "t", 600)
    tally = UsageTally()
    flusher = UsageFlusher(tally, store, interval_s=3600)
    try:
        tally.add({"v1": Usage(7, 1)})
        server.stop()
        flusher.flush()
        assert flusher.failing
        tally.add({"v1": Usage(3, 0)})
        server.start()
        flusher.flush()
        assert not flusher.failing
        window = store.read("v1", time.time())
        assert (window.rows, window.failed) == (10, 1)
    finally:
        server.stop()
