"""The HTTP server's own failure paths, without a worker behind it."""

from __future__ import annotations

import socket
import struct
import threading
import time
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


def test_a_client_that_hangs_up_before_the_answer_leaves_no_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A 5 MB /predict body, then the connection reset before the (slow) answer: the write
    fails, and the server says nothing on stderr (at most a debug line) and goes on."""
    received, answered = threading.Event(), threading.Event()

    def slow_predict(body: bytes) -> tuple[HTTPStatus, object]:
        received.set()
        time.sleep(0.3)  # the client is gone by now
        answered.set()
        return HTTPStatus.OK, {"n": len(body)}

    sources = HealthSources(alive=lambda: True, readiness=SOURCES.readiness, predict=slow_predict)
    server = HealthServer("127.0.0.1", 0, WorkerMetrics().registry, sources)
    server.start()
    try:
        body = b"x" * 5_000_000
        with socket.create_connection(("127.0.0.1", server.port)) as client:
            client.sendall(
                f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            assert received.wait(5)
            # close with a reset (linger 0), as a client that gives up does
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert answered.wait(5)
        time.sleep(0.3)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as ok:
            assert ok.status == 200
    finally:
        server.stop()
    assert capfd.readouterr().err == ""
