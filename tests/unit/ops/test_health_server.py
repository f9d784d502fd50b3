"""The HTTP server's own failure paths, without a worker behind it."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from http import HTTPStatus

import pytest

from worker.errors import ConfigError
from worker.ops.health import MAX_PREDICT_BODY_BYTES, HealthServer, HealthSources, Readiness
from worker.ops.metrics import WorkerMetrics

SOURCES = HealthSources(
    alive=lambda: True,
    readiness=lambda: Readiness(False, "test"),
    predict=lambda body: (HTTPStatus.OK, {}),
)


def test_a_taken_metrics_port_is_a_one_line_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"metrics_port: cannot listen on 127.0.0.1:{port}"):
            HealthServer("127.0.0.1", port, WorkerMetrics().registry, SOURCES)


def test_an_oversized_predict_body_is_refused_before_it_is_read() -> None:
    server = HealthServer("127.0.0.1", 0, WorkerMetrics().registry, SOURCES)
    server.start()
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/predict",
            data=b"x",
            method="POST",
            headers={"Content-Length": str(MAX_PREDICT_BODY_BYTES + 1)},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 413
        refused.value.close()
    finally:
        server.stop()
