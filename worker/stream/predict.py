"""POST /predict: score a request body synchronously with the loop's own decode, arms, predict
and encode, so an answer over HTTP is the one the stream would give. An event's arm comes
from its optional `key` field (the Kafka key it would carry, as text), else its event_id;
shadow versions do not score HTTP requests."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson

from worker.models.holder import Serving
from worker.stream.events import Limits
from worker.stream.scoring import score_batch


def predict_body(body: bytes, serving: Serving | None, limits: Limits) -> tuple[HTTPStatus, Any]:
    """Score one event (an object) or several (a list) synchronously, as the stream would."""
    if serving is None:
        return HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no model loaded yet"}
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
    try:
        keys = [_key(event) for event in events]
    except ValueError as exc:
        return HTTPStatus.BAD_REQUEST, {"error": str(exc)}
    scored = score_batch(
        [orjson.dumps(e) for e in events],
        keys,
        serving,
        limits,
        with_shadows=False,
    )
    if scored.rejects:
        errors = [{"index": r.index, "error": r.reason, "detail": r.detail} for r in scored.rejects]
        return HTTPStatus.BAD_REQUEST, {"error": "some events cannot be scored", "events": errors}
    predictions = [orjson.loads(p) for p in scored.predictions]
    return HTTPStatus.OK, predictions[0] if single else predictions


def _key(event: object) -> bytes | None:
    """The event's optional `key`, as the Kafka key bytes it stands for."""
    key = event.get("key") if isinstance(event, dict) else None
    if key is None or isinstance(key, str):
        return key.encode() if key is not None else None
    raise ValueError(f"an event's key must be a string, got {key!r}")
