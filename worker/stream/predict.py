"""POST /predict: score a request body synchronously with the loop's own decode, predict
and encode, so an answer over HTTP is the one the stream would give."""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Any

import orjson

from worker.models.holder import LoadedModel
from worker.stream.events import decode_batch, encode_predictions
from worker.stream.loop import score_isolating_failures


def predict_body(
    body: bytes, model: LoadedModel | None, max_event_bytes: int
) -> tuple[HTTPStatus, Any]:
    """Score one event (an object) or several (a list) synchronously, as the stream would."""
    if model is None:
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
