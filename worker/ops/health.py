"""HTTP beside the loop: /metrics, /healthz, /readyz and POST /predict, on metrics_port.

Runs in daemon threads of the standard library's server: none of it touches the consumer,
so a slow scrape or a debugging request never delays a batch. What the endpoints answer
comes from `HealthSources`, so this server knows nothing of models or streams (/predict is
`worker.stream.predict`, handed in by the service).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from worker.errors import ConfigError
from worker.settings import Settings

log = structlog.get_logger(__name__)

MAX_PREDICT_BODY_BYTES = 10_000_000


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str
    degraded: str | None = None


@dataclass(frozen=True)
class HealthSources:
    """What the endpoints read, as callables so the server holds no worker state itself."""

    alive: Callable[[], bool]
    readiness: Callable[[], Readiness]
    # POST /predict: the request body to a status and a JSON-able answer (None: no /predict)
    predict: Callable[[bytes], tuple[HTTPStatus, object]] | None = None


class HealthServer:
    def __init__(
        self, host: str, port: int, metrics: CollectorRegistry, sources: HealthSources
    ) -> None:
        handler = type("Handler", (_Handler,), {"metrics": metrics, "sources": sources})
        try:
            self._server = _Server((host, port), handler)
        except OSError as exc:
            raise ConfigError(
                f"setting metrics_port: cannot listen on {host}:{port}: {exc.strerror}"
            ) from None
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    @classmethod
    def for_settings(
        cls, settings: Settings, metrics: CollectorRegistry, sources: HealthSources
    ) -> HealthServer:
        return cls(settings.metrics_host, settings.metrics_port, metrics, sources)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A structured log line, not the standard library's traceback on stderr."""
        error = sys.exception()
        log.error("http.request_failed", error=f"{type(error).__name__}: {error}")


class _Handler(BaseHTTPRequestHandler):
    metrics: CollectorRegistry
    sources: HealthSources

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes every few seconds would drown the worker's own log lines

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError as exc:  # the client hung up before reading the answer
            log.debug("http.client_gone", path=getattr(self, "path", ""), error=type(exc).__name__)

    def do_GET(self) -> None:
        if self.path == "/metrics":
            self._send(HTTPStatus.OK, generate_latest(self.metrics), CONTENT_TYPE_LATEST)
        elif self.path == "/healthz":
            alive = self.sources.alive()
            self._json(HTTPStatus.OK if alive else HTTPStatus.SERVICE_UNAVAILABLE, {"alive": alive})
        elif self.path == "/readyz":
            state = self.sources.readiness()
            body = {"ready": state.ready, "reason": state.reason, "degraded": state.degraded}
            self._json(HTTPStatus.OK if state.ready else HTTPStatus.SERVICE_UNAVAILABLE, body)
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path}"})

    def do_POST(self) -> None:
        predict = self.sources.predict
        if self.path != "/predict" or predict is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PREDICT_BODY_BYTES:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
            return
        status, body = predict(self.rfile.read(length))
        self._json(status, body)

    def _json(self, status: HTTPStatus, body: object) -> None:
        self._send(status, orjson.dumps(body), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
