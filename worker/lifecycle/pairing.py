"""Labels paired with the other half of their event by event_id, in Redis: the engine the
monitor's join (a version's prediction) and the retrainer's (the feature row) both run on.

Why Redis and not a process's memory: the two halves sit on different topics and partitions,
so with several processes they are often read by two of them; and a process killed mid-stream
must lose no pair. Each record is applied by one Lua script (atomic, so whichever half arrives
second sees the first), and applying a record twice changes nothing: a process commits its
offsets only after Redis has taken the batch, and a repeated batch is harmless.

Layout under P (the store's prefix):
  P:join:<event_id>   hash: `label`, one field per other half (its name starts with the
                      store's marker; the first value stands), `c<US><label>` per
                      conflicting label seen
  P:due               sorted set: event_id -> when its join window closes (first half seen +
                      label_window_s); the sweep drops what is still unpaired then, counting it
  P:stats             hash of counters: <halves>, labels, joined, conflicting_labels,
                      unlabelled, unmatched_labels
(<US> is the unit separator, \\x1f.) A store adds what a pair becomes: a Lua function
`pair(name, value, event_id, label)` returning 1 if it added a record, and `finish()`, run
once per script call. Every key a script touches is derived from P, so this needs one Redis,
not a cluster.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import orjson
import redis

from worker.lifecycle.records import Label

SEP = "\x1f"
_SWEEP_LIMIT = 5000
_CHUNK = 250  # records per script call
T = TypeVar("T")

# A chunk's records come as one JSON array (ARGV[5]): decoding it in Redis costs less than
# packing each field as an argument in the client, which was half the monitor's time.
_HEADER = """
local prefix, window, window_s, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local items = cjson.decode(ARGV[5])
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
"""

# ARGV: prefix, window, label_window_s, now, then [event_id, name, value, ...]. A repeat (a
# replayed batch, or a redelivered event rescored) changes nothing: the first value stands,
# and was paired then if its label was there.
_ADD_HALVES = """
local new, joined = 0, 0
for i = 1, #items, 3 do
  local event_id, name, value = items[i], items[i + 1], items[i + 2]
  local key = prefix .. ':join:' .. event_id
  local fresh = open(event_id)
  if redis.call('HSETNX', key, name, value) == 1 then
    expire(key, fresh)
    new = new + 1
    local label = redis.call('HGET', key, 'label')
    if label then
      joined = joined + pair(name, value, event_id, label)
    end
  end
end
finish()
count(HALVES, new)
count('joined', joined)
return joined
"""

# ARGV: prefix, window, label_window_s, now, then [event_id, label, ...]. The first label of an
# event wins; a later, different one is counted as conflicting (once per value, so a replay
# counts nothing again); a repeat of the first changes nothing.
_ADD_LABELS = """
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
        if string.sub(name, 1, #MARKER) == MARKER then
          joined = joined + pair(name, fields[f + 1], event_id, label)
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

# ARGV: prefix, now, limit. Returns {unlabelled, unmatched_labels, closed}.
_SWEEP = """
local prefix, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', prefix .. ':due', '-inf', now, 'LIMIT', 0, limit)
local unlabelled, unmatched = 0, 0
for _, event_id in ipairs(due) do
  local key = prefix .. ':join:' .. event_id
  local has_label, halves = false, false
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if name == 'label' then
      has_label = true
    elseif string.sub(name, 1, #MARKER) == MARKER then
      halves = true
    end
  end
  if has_label and not halves then unmatched = unmatched + 1 end
  if halves and not has_label then unlabelled = unlabelled + 1 end
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
    unlabelled: int  # events with a half whose label never came within the window
    unmatched_labels: int  # labels whose event's other half never came within the window
    closed: int  # join windows closed, joined or not


@dataclass(frozen=True)
class Half:
    """One event's half other than its label: field `name` of its join hash holds `value`."""

    event_id: str
    name: str
    value: str


class Pairing:
    """The engine of one store: `marker` starts the name of every other half's field, `halves`
    names their counter in P:stats, `pairing_lua` defines `pair` and `finish`."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        label_window_s: float,
        window: int,
        *,
        marker: str,
        halves: str,
        pairing_lua: str,
    ) -> None:
        self._redis = client
        self.prefix = prefix
        self.halves = halves
        self._label_window_s = label_window_s
        self.window_size = window
        constants = f"local MARKER, HALVES = {_lua_text(marker)}, {_lua_text(halves)}\n"
        store = constants + _HEADER + pairing_lua
        self._add_halves = client.register_script(store + _ADD_HALVES)
        self._add_labels = client.register_script(store + _ADD_LABELS)
        self._sweep = client.register_script(constants + _SWEEP)

    def apply(self, halves: Sequence[Half], labels: Sequence[Label], now: float) -> int:
        """Apply a batch in one round trip; the number of pairs it added. Records go in
        chunks, a script call each: one call per record cost three times as much, and a
        chunk keeps each call short for the rest of Redis's clients."""
        common: list[str | float] = [self.prefix, self.window_size, self._label_window_s, repr(now)]
        pipe = self._redis.pipeline(transaction=False)
        for some in _chunks(halves):
            items = [v for half in some for v in (half.event_id, half.name, half.value)]
            self._add_halves(args=[*common, orjson.dumps(items)], client=pipe)
        for chunk in _chunks(labels):
            items = [v for label in chunk for v in (label.event_id, label_text(label.label))]
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
        return {text(k): int(v) for k, v in raw.items()}


def label_text(value: float) -> str:
    """A label as the same text whoever writes it: 1.0 -> "1", so replays and ints agree."""
    return str(int(value)) if value.is_integer() else repr(value)


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _chunks(records: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(records), _CHUNK):
        yield records[start : start + _CHUNK]


def _lua_text(value: str) -> str:
    """A Lua string literal of `value` (decimal escapes for control characters)."""
    return "'" + "".join(c if c.isalnum() or c == "_" else f"\\{ord(c):03d}" for c in value) + "'"
