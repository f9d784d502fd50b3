"""The reloader thread survives what it did not expect (a pure unit test with stand-ins)."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from worker.models.holder import ModelHolder
from worker.models.reloader import ModelReloader
from worker.ops.metrics import WorkerMetrics
from worker.settings import Settings


class ExplodingRegistry:
    def read_keys(self) -> tuple[str, bytes]:
        raise RuntimeError("unexpected")


def test_an_unexpected_error_in_a_check_is_kept_logged_and_counted() -> None:
    metrics = WorkerMetrics()
    consumer: Any = object()  # never touched by a check
    reloader = ModelReloader(
        Settings(),
        ExplodingRegistry(),  # type: ignore[arg-type]  # a stand-in: only read_keys() is used
        ModelHolder(),
        consumer,
        metrics,
    )
    with capture_logs() as logs:
        reloader.check_safely(forced=False)
    assert reloader.last_error == "reload check crashed: RuntimeError: unexpected"
    assert [entry["event"] for entry in logs] == ["reload.check_crashed"]
    assert (
        metrics.registry.get_sample_value("scorer_model_reloads_total", {"result": "failed"}) == 1
    )
