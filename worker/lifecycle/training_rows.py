"""Feature events joined to their labels in Redis: the retrainer's training window, shared by
every retrainer.

The join is pairing.py's, with the event's features as the other half (field `x` ->
`<ts><US><features JSON>`; the first stands). What a pair becomes, under P
(`<registry_prefix>:retrain`):
  P:rows    sorted set: `<event_id><US><label><US><features JSON>` -> the event's time; trimmed
            to the newest retrain_window_rows, so Redis holds a bounded window however long
            the stream runs
(<US> is the unit separator, \\x1f; JSON escapes it, so it never occurs in the features.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import orjson
import redis

from worker.lifecycle.pairing import SEP, Half, Pairing, text
from worker.lifecycle.records import FeatureRow, Label
from worker.models.features import FeatureSchema, rows_matrix
from worker.settings import Settings
from worker.stream.events import MAX_CATEGORY_CHARS, value_fault

FEATURES_FIELD = "x"

_ROWS = """
local grew = false
local function pair(name, value, event_id, label)
  local cut = string.find(value, '\\31', 1, true)
  local added = redis.call('ZADD', prefix .. ':rows', 'NX', string.sub(value, 1, cut - 1),
                           event_id .. '\\31' .. label .. '\\31' .. string.sub(value, cut + 1))
  if added == 1 then grew = true end
  return added
end
local function finish()
  if grew then redis.call('ZREMRANGEBYRANK', prefix .. ':rows', 0, -(window + 1)) end
end
"""


@dataclass(frozen=True)
class Rows:
    """The labelled rows of the window, oldest event first, with the features as sent."""

    event_ids: list[str]
    ts: np.ndarray
    labels: np.ndarray
    features: list[dict[str, object]]

    def matrix(self, schema: FeatureSchema, max_category_chars: int = MAX_CATEGORY_CHARS) -> Matrix:
        """The rows labelled 0 or 1 whose features a worker would score with this schema, as
        the worker decodes them (its kinds, its missing values: features.rows_matrix); the
        others are counted, not used (a feature the model needs that the event lacks or holds
        as the wrong kind, a label a classifier cannot learn)."""
        kept, values = [], []
        for i, features in enumerate(self.features):
            row = [features.get(name) for name in schema.names]
            if self.labels[i] in (0.0, 1.0) and _scorable(schema, row, max_category_chars):
                kept.append(i)
                values.append(row)
        index = np.array(kept, dtype=np.int64)
        x = rows_matrix(schema, values)
        return Matrix(x, self.labels[index], self.ts[index], len(self.features) - len(kept))


@dataclass(frozen=True)
class Matrix:
    x: np.ndarray
    y: np.ndarray
    ts: np.ndarray
    incomplete: int  # rows left out: a feature missing or not a finite number, a label not 0/1


class TrainingStore(Pairing):
    def __init__(
        self, client: redis.Redis, registry_prefix: str, label_window_s: float, window_rows: int
    ) -> None:
        super().__init__(
            client,
            f"{registry_prefix}:retrain",
            label_window_s,
            window_rows,
            marker=FEATURES_FIELD,
            halves="features",
            pairing_lua=_ROWS,
        )

    @classmethod
    def for_settings(cls, client: redis.Redis, settings: Settings) -> TrainingStore:
        return cls(
            client, settings.registry_prefix, settings.label_window_s, settings.retrain_window_rows
        )

    def add(self, rows: Sequence[FeatureRow], labels: Sequence[Label], now: float) -> int:
        """Apply a batch in one round trip; the number of labelled rows it added."""
        halves = [Half(r.event_id, FEATURES_FIELD, f"{r.ts!r}{SEP}{r.features}") for r in rows]
        return self.apply(halves, labels, now)

    def size(self) -> int:
        return int(self._redis.zcard(self._rows_key))

    def rows(self) -> Rows:
        members = cast(
            "list[tuple[bytes, float]]",
            self._redis.zrange(self._rows_key, 0, -1, withscores=True),
        )
        event_ids, labels, features = [], [], []
        for member, _ in members:
            event_id, label, values = text(member).rsplit(SEP, 2)
            event_ids.append(event_id)
            labels.append(float(label))
            features.append(orjson.loads(values))
        return Rows(
            event_ids,
            np.array([at for _, at in members], dtype=np.float64),
            np.array(labels, dtype=np.float64),
            features,
        )

    @property
    def _rows_key(self) -> str:
        return f"{self.prefix}:rows"


def _scorable(schema: FeatureSchema, row: Sequence[object], max_chars: int) -> bool:
    return all(
        value_fault(name, kind, value, schema.accepts_missing, max_chars) is None
        for name, kind, value in zip(schema.names, schema.kinds, row, strict=True)
    )
