"""Labels joined to predictions in Redis, shared by every monitor, and the quality windows.

The join itself is pairing.py's, with a version's prediction on one arm as the other half of an
event (field `p<US><version><US><arm>` -> its score; the first score stands). What a pair
becomes, under P (`<registry_prefix>:quality`):
  P:pairs:<version><US><arm>
                      sorted set: `<event_id><US><score><US><label>` -> joined at; trimmed to
                      the newest quality_window members; gone RETENTION_S after its last join
  P:windows           set of `<version><US><arm>` that have pairs
(<US> is the unit separator, \\x1f, which no version name or arm holds.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import redis

from worker.lifecycle.pairing import SEP, Half, Pairing, text
from worker.lifecycle.records import Label, Prediction
from worker.settings import Settings

# A version's window outlives its last join by this much, then leaves the report and /metrics.
RETENTION_S = 7 * 24 * 3600
PREDICTION = f"p{SEP}"  # starts the join-hash field of each prediction of an event

# One labelled prediction into its version's window (1 if new); each touched window is trimmed
# once per call, in `finish`, so it never shows more than quality_window pairs to a reader.
_PAIRS = (
    f"local RETENTION_S = {RETENTION_S}\n"
    + """
local touched = {}
local function pair(name, score, event_id, label)
  local cut = string.find(name, '\\31', 3, true)
  local version, arm = string.sub(name, 3, cut - 1), string.sub(name, cut + 1)
  local window_name = version .. '\\31' .. arm
  local added = redis.call('ZADD', prefix .. ':pairs:' .. window_name, 'NX', now,
                           event_id .. '\\31' .. score .. '\\31' .. label)
  if added == 1 then touched[window_name] = true end
  return added
end
local function finish()
  for name in pairs(touched) do
    local key = prefix .. ':pairs:' .. name
    redis.call('SADD', prefix .. ':windows', name)
    redis.call('ZREMRANGEBYRANK', key, 0, -(window + 1))
    redis.call('EXPIRE', key, RETENTION_S)
  end
end
"""
)


@dataclass(frozen=True)
class Window:
    """One version's labelled predictions on one arm, oldest first."""

    version: str
    arm: str
    event_ids: list[str]
    scores: np.ndarray
    labels: np.ndarray
    joined_at: np.ndarray

    def joined_since(self, start: float) -> Window:
        """The pairs joined at or after `start`."""
        keep = int(np.searchsorted(self.joined_at, start, side="left"))
        return Window(
            self.version,
            self.arm,
            self.event_ids[keep:],
            self.scores[keep:],
            self.labels[keep:],
            self.joined_at[keep:],
        )


class JoinStore(Pairing):
    def __init__(
        self, client: redis.Redis, registry_prefix: str, label_window_s: float, quality_window: int
    ) -> None:
        super().__init__(
            client,
            f"{registry_prefix}:quality",
            label_window_s,
            quality_window,
            marker=PREDICTION,
            halves="predictions",
            pairing_lua=_PAIRS,
        )
        self.quality_window = quality_window

    @classmethod
    def for_settings(cls, client: redis.Redis, settings: Settings) -> JoinStore:
        return cls(
            client, settings.registry_prefix, settings.label_window_s, settings.quality_window
        )

    def add(self, predictions: Sequence[Prediction], labels: Sequence[Label], now: float) -> int:
        """Apply a batch in one round trip; the number of labelled predictions it added."""
        halves = [
            Half(p.event_id, f"{PREDICTION}{p.version}{SEP}{p.arm}", repr(p.score))
            for p in predictions
        ]
        return self.apply(halves, labels, now)

    def pairs_key(self, version: str, arm: str) -> str:
        """The Redis key of a version's window on one arm."""
        return self._pairs_key(f"{version}{SEP}{arm}")

    def _pairs_key(self, name: str) -> str:
        return f"{self.prefix}:pairs:{name}"

    def windows(self) -> list[tuple[str, str]]:
        """(version, arm) of every window with pairs, sorted."""
        key = f"{self.prefix}:windows"
        names = sorted(text(name) for name in self._redis.smembers(key))
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.exists(self._pairs_key(name))
        live = [name for name, exists in zip(names, pipe.execute(), strict=True) if exists]
        if gone := set(names) - set(live):  # retired: their windows expired
            self._redis.srem(key, *gone)
        split = (name.partition(SEP) for name in live)
        return [(version, arm) for version, _, arm in split]

    def window(self, version: str, arm: str, since: float = 0.0) -> Window:
        """The pairs of a version's arm joined at or after `since`."""
        key = self.pairs_key(version, arm)
        members = cast(
            "list[tuple[bytes, float]]",
            self._redis.zrangebyscore(key, since, "+inf", withscores=True),
        )
        event_ids: list[str] = []
        scores, labels, joined_at = [], [], []
        for member, at in members:
            event_id, score, label = text(member).rsplit(SEP, 2)
            event_ids.append(event_id)
            scores.append(float(score))
            labels.append(float(label))
            joined_at.append(at)
        return Window(
            version,
            arm,
            event_ids,
            np.array(scores, dtype=np.float64),
            np.array(labels, dtype=np.float64),
            np.array(joined_at, dtype=np.float64),
        )
