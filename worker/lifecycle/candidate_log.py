"""The retrainer's candidates, newest first, in Redis: every one it fitted, published or not,
with why and its figures (`scorer model candidates`). Kept apart from the registry's change
history, so that rejected rounds (one every few minutes, for ever) never push an operator's
changes, or the records the guardrails judge a primary by, out of it."""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis

LIMIT = 1000


class CandidateLog:
    def __init__(self, client: redis.Redis, registry_prefix: str) -> None:
        self._redis = client
        self.key = f"{registry_prefix}:retrain:candidates"

    def add(self, version: str, outcome: str, **details: object) -> None:
        record = {"at": time.time(), "candidate": version, "outcome": outcome} | details
        pipe = self._redis.pipeline(transaction=True)
        pipe.lpush(self.key, orjson.dumps(record))
        pipe.ltrim(self.key, 0, LIMIT - 1)
        pipe.execute()

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        return [orjson.loads(raw) for raw in self._redis.lrange(self.key, 0, limit - 1)]
