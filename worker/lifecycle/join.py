"""Labels joined to predictions in Redis, shared by every monitor, and the quality windows.

Why Redis and not the monitor's memory: a prediction and its label sit on different topics and
partitions, so with several monitors they are often read by two different processes; and a
monitor killed mid-stream must lose no join. Each record is applied by one Lua script (atomic,
so whichever half of a pair arrives second sees the first), and applying a record twice
changes nothing: the monitor commits its offsets only after Redis has taken the batch, and a
repeated batch is harmless.

Layout under P (`<registry_prefix>:quality`):
  P:join:<event_id>   hash: `label`, `p<US><version><US><arm>` -> score per prediction (the
                      first score stands), `c<US><label>` per conflicting label seen
  P:due               sorted set: event_id -> when its join window closes (first half seen +
                      label_window_s); the sweep drops what is still unjoined then, counting it
  P:pairs:<version><US><arm>
                      sorted set: `<event_id><US><score><US><label>` -> joined at; trimmed to
                      the newest quality_window members; gone RETENTION_S after its last join
  P:windows           set of `<version><US><arm>` that have pairs
  P:stats             hash of counters: predictions, labels, joined, conflicting_labels,
                      unlabelled, unmatched_labels
(<US> is the unit separator, \\x1f, which no version name or arm holds.) Every key one Lua
script touches is derived from P, so this needs one Redis, not a cluster.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

import numpy as np
import orjson
import redis

from worker.lifecycle.records import Label, Prediction
from worker.settings import Settings

SEP = "\x1f"
_SWEEP_LIMIT = 5000
_CHUNK = 250  # records per script call
T = TypeVar("T")

# A version's window outlives its last join by this much, then leaves the report and /metrics.
RETENTION_S = 7 * 24 * 3600

# Shared by both scripts. A chunk's records come as one JSON array (ARGV[5]): decoding it in
# Redis costs less than packing each field as an argument in the client, which was half the
# monitor's time.
_RECORD = (
    f"local RETENTION_S = {RETENTION_S}\n"
    + """
local prefix, window, window_s, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local items = cjson.decode(ARGV[5])
local touched = {}
-- One labelled prediction into its version's window (1 if new); the window is trimmed once
-- per call, in `finish`, so it never shows more than quality_window pairs to a reader.
local function record(version, arm, event_id, score, label)
  local name = version .. '\\31' .. arm
  local added = redis.call('ZADD', prefix .. ':pairs:' .. name, 'NX', now,
                           event_id .. '\\31' .. score .. '\\31' .. label)
  if added == 1 then touched[name] = true end
  return added
end
-- Before the first write to an event's hash: start its join window. True if it is new.
local function open(event_id)
  return redis.call('ZADD', prefix .. ':due', 'NX', tonumber(now) + window_s, event_id) == 1
end
-- After that first write (an expiry set on a key not yet there is lost): a hash the sweep
-- never reaches still goes.
local function expire(key, fresh)
  if fresh then
    redis.call('PEXPIRE', key, math.floor((2 * window_s + 60) * 1000))
  end
end
local function count(name, n)
  if n > 0 then redis.call('HINCRBY', prefix .. ':stats', name, n) end
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

# ARGV: prefix, quality_window, label_window_s, now, then [event_id, version, arm, score, ...].
# A repeat (a replayed batch, or a redelivered event rescored) changes nothing: the first score
# stands, and was joined then if its label was there.
_ADD_PREDICTIONS = (
    _RECORD
    + """
local new, joined = 0, 0
for i = 1, #items, 4 do
  local event_id, version, arm, score = items[i], items[i + 1], items[i + 2], items[i + 3]
  local key = prefix .. ':join:' .. event_id
  local fresh = open(event_id)
  if redis.call('HSETNX', key, 'p\\31' .. version .. '\\31' .. arm, score) == 1 then
    expire(key, fresh)
    new = new + 1
    local label = redis.call('HGET', key, 'label')
    if label then
      joined = joined + record(version, arm, event_id, score, label)
    end
  end
end
finish()
count('predictions', new)
count('joined', joined)
return joined
"""
)

# ARGV: prefix, quality_window, label_window_s, now, then [event_id, label, ...].
# The first label of an event wins; a later, different one is counted as conflicting (once per
# value, so a replay counts nothing again); a repeat of the first changes nothing.
_ADD_LABELS = (
    _RECORD
    + """
local new, joined, conflicting = 0, 0, 0
for i = 1, #items, 2 do
  local event_id, label = items[i], items[i + 1]
  local key = prefix .. ':join:' .. event_id
  local fresh = open(event_id)
  local first = (not fresh) and redis.call('HGET', key, 'label')
  if first then
    if first ~= label and redis.call('HSETNX', key, 'c\\31' .. label, 1) == 1 then
      conflicting = conflicting + 1
    end
  else
    redis.call('HSET', key, 'label', label)
    expire(key, fresh)
    new = new + 1
    if not fresh then
      local fields = redis.call('HGETALL', key)
      for f = 1, #fields, 2 do
        local name = fields[f]
        if string.sub(name, 1, 2) == 'p\\31' then
          local cut = string.find(name, '\\31', 3, true)
          joined = joined + record(string.sub(name, 3, cut - 1), string.sub(name, cut + 1),
                                   event_id, fields[f + 1], label)
        end
      end
    end
  end
end
finish()
count('labels', new)
count('conflicting_labels', conflicting)
count('joined', joined)
return joined
"""
)

# ARGV: prefix, now, limit. Returns {unlabelled, unmatched_labels, closed}.
_SWEEP = """
local prefix, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', prefix .. ':due', '-inf', now, 'LIMIT', 0, limit)
local unlabelled, unmatched = 0, 0
for _, event_id in ipairs(due) do
  local key = prefix .. ':join:' .. event_id
  local has_label, predicted = false, false
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if name == 'label' then
      has_label = true
    elseif string.sub(name, 1, 2) == 'p\\31' then
      predicted = true
    end
  end
  if has_label and not predicted then unmatched = unmatched + 1 end
  if predicted and not has_label then unlabelled = unlabelled + 1 end
  redis.call('DEL', key)
end
if #due > 0 then
  redis.call('ZREM', prefix .. ':due', unpack(due))
  redis.call('HINCRBY', prefix .. ':stats', 'unlabelled', unlabelled)
  redis.call('HINCRBY', prefix .. ':stats', 'unmatched_labels', unmatched)
end
return {unlabelled, unmatched, #due}
"""


@dataclass(frozen=True)
class Swept:
    unlabelled: int  # events with predictions whose label never came within the window
    unmatched_labels: int  # labels whose event was never predicted within the window
    closed: int  # join windows closed, joined or not


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


class JoinStore:
    def __init__(
        self, client: redis.Redis, registry_prefix: str, label_window_s: float, quality_window: int
    ) -> None:
        self._redis = client
        self.prefix = f"{registry_prefix}:quality"
        self._label_window_s = label_window_s
        self.quality_window = quality_window
        self._add_predictions = client.register_script(_ADD_PREDICTIONS)
        self._add_labels = client.register_script(_ADD_LABELS)
        self._sweep = client.register_script(_SWEEP)

    @classmethod
    def for_settings(cls, client: redis.Redis, settings: Settings) -> JoinStore:
        return cls(
            client, settings.registry_prefix, settings.label_window_s, settings.quality_window
        )

    def add(self, predictions: Sequence[Prediction], labels: Sequence[Label], now: float) -> int:
        """Apply a batch in one round trip; the number of labelled predictions it added.
        Records go in chunks, a script call each: one call per record cost three times as
        much, and a chunk keeps each call short for the rest of Redis's clients."""
        common: list[str | float] = [
            self.prefix,
            self.quality_window,
            self._label_window_s,
            repr(now),
        ]
        pipe = self._redis.pipeline(transaction=False)
        for some in _chunks(predictions):
            items = [v for p in some for v in (p.event_id, p.version, p.arm, repr(p.score))]
            self._add_predictions(args=[*common, orjson.dumps(items)], client=pipe)
        for chunk in _chunks(labels):
            items = [v for label in chunk for v in (label.event_id, _number(label.label))]
            self._add_labels(args=[*common, orjson.dumps(items)], client=pipe)
        return sum(int(n) for n in pipe.execute())

    def sweep(self, now: float) -> Swept:
        """Close the join windows that are due; each is closed and counted by one caller only."""
        unlabelled = unmatched = closed = 0
        while True:
            u, m, n = (int(x) for x in self._sweep(args=[self.prefix, repr(now), _SWEEP_LIMIT]))
            unlabelled, unmatched, closed = unlabelled + u, unmatched + m, closed + n
            if n < _SWEEP_LIMIT:
                return Swept(unlabelled, unmatched, closed)

    def pending(self) -> int:
        """Events whose join window is open."""
        return int(self._redis.zcard(f"{self.prefix}:due"))

    def stats(self) -> dict[str, int]:
        raw = self._redis.hgetall(f"{self.prefix}:stats")
        return {_text(k): int(v) for k, v in raw.items()}

    def windows(self) -> list[tuple[str, str]]:
        """(version, arm) of every window with pairs, sorted."""
        key = f"{self.prefix}:windows"
        names = sorted(_text(name) for name in self._redis.smembers(key))
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.exists(f"{self.prefix}:pairs:{name}")
        live = [name for name, exists in zip(names, pipe.execute(), strict=True) if exists]
        if gone := set(names) - set(live):  # retired: their windows expired
            self._redis.srem(key, *gone)
        split = (name.partition(SEP) for name in live)
        return [(version, arm) for version, _, arm in split]

    def window(self, version: str, arm: str, since: float = 0.0) -> Window:
        """The pairs of a version's arm joined at or after `since`."""
        key = f"{self.prefix}:pairs:{version}{SEP}{arm}"
        members = cast(
            "list[tuple[bytes, float]]",
            self._redis.zrangebyscore(key, since, "+inf", withscores=True),
        )
        event_ids: list[str] = []
        scores, labels, joined_at = [], [], []
        for member, at in members:
            event_id, score, label = _text(member).rsplit(SEP, 2)
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


def _chunks(records: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(records), _CHUNK):
        yield records[start : start + _CHUNK]


def _number(value: float) -> str:
    """A label as the same text whoever writes it: 1.0 -> "1", so replays and ints agree."""
    return str(int(value)) if value.is_integer() else repr(value)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
