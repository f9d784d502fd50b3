"""HTTP beside the loop: /metrics, /healthz, /readyz and POST /predict, on metrics_port.

Runs in daemon threads of the standard library's server: none of it touches the consumer,
so a slow scrape or a debugging request never delays a batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.errors import ConfigError
from worker.events import decode_batch, encode_predictions
from worker.loop import score_isolating_failures
from worker.metrics import WorkerMetrics
from worker.models import LoadedModel

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
    current_model: Callable[[], LoadedModel | None]
    max_event_bytes: int


class HealthServer:
    def __init__(
        self, host: str, port: int, metrics: WorkerMetrics, sources: HealthSources
    ) -> None:
        handler = type("Handler", (_Handler,), {"metrics": metrics, "sources": sources})
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(
                f"setting metrics_port: cannot listen on {host}:{port}: {exc.strerror}"
            ) from None
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    metrics: WorkerMetrics
    sources: HealthSources

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes every few seconds would drown the worker's own log lines

    def do_GET(self) -> None:
        if self.path == "/metrics":
            self._send(HTTPStatus.OK, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)
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
        if self.path != "/predict":
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PREDICT_BODY_BYTES:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
            return
        model = self.sources.current_model()
        if model is None:
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no model loaded yet"})
            return
        status, body = predict_body(self.rfile.read(length), model, self.sources.max_event_bytes)
        self._json(status, body)

    def _json(self, status: HTTPStatus, body: object) -> None:
        self._send(status, orjson.dumps(body), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def predict_body(body: bytes, model: LoadedModel, max_event_bytes: int) -> tuple[HTTPStatus, Any]:
    """Score one event (an object) or several (a list) synchronously, as the stream would."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return HTTPStatus.BAD_REQUEST, {"error": f"body is not valid JSON: {exc}"}
    single = isinstance(parsed, dict)
    events = [parsed] if single else parsed
    if not isinstance(events, list) or not events:
        return HTTPStatus.BAD_REQUEST, {
            "error": "body must be an event object or a non-empty list of them"
        }
    batch = decode_batch([orjson.dumps(e) for e in events], model.features, max_event_bytes)
    scores = score_isolating_failures(model, batch)
    if batch.rejects:
        errors = [
            {"index": r.index, "error": r.reason, "detail": r.detail}
            for r in sorted(batch.rejects, key=lambda r: r.index)
        ]
        return HTTPStatus.BAD_REQUEST, {"error": "some events cannot be scored", "events": errors}
    predictions = [
        orjson.loads(p) for p in encode_predictions(batch, scores, model.version, time.time())
    ]
    return HTTPStatus.OK, predictions[0] if single else predictions
