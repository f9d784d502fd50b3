"""Pure decoding of feature events into one matrix, and encoding of predictions.

Hot path: one orjson parse and one C-level feature lookup per event, type checks over the
whole batch at once, then a single float64 array; finiteness is checked vectorised.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson

from worker.models.features import FeatureKind, FeatureSchema, rows_matrix

EventId = str | int
MAX_CATEGORY_CHARS = 256  # the max_category_chars setting's default


@dataclass(frozen=True)
class Limits:
    """What an event may be: its size in bytes, a category value's length in characters."""

    max_event_bytes: int
    max_category_chars: int = MAX_CATEGORY_CHARS


class Reason:
    """Dead-letter reason codes, carried in the `error` header."""

    TOO_LARGE = "too_large"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_EVENT_ID = "missing_event_id"
    INVALID_EVENT_ID = "invalid_event_id"
    INVALID_TS = "invalid_ts"
    MISSING_FEATURES = "missing_features"
    MISSING_FEATURE = "missing_feature"
    NON_NUMERIC_FEATURE = "non_numeric_feature"
    NON_FINITE_FEATURE = "non_finite_feature"
    INVALID_CATEGORY = "invalid_category"  # a category feature that is not a string
    CATEGORY_TOO_LONG = "category_too_long"  # longer than max_category_chars
    SCORING_FAILED = "scoring_failed"  # the model raised on this row or gave it no finite score
    # schema-registry records (records.py)
    INVALID_WIRE_FORMAT = "invalid_wire_format"  # no 0x00 magic byte, or shorter than a header
    UNKNOWN_SCHEMA = "unknown_schema"  # the registry holds no schema of the record's id
    UNSUPPORTED_SCHEMA = "unsupported_schema"  # not a record schema of a type read here
    SCHEMA_MISMATCH = "schema_mismatch"  # the payload does not decode with its schema

    @classmethod
    def codes(cls) -> list[str]:
        return [value for name, value in vars(cls).items() if name.isupper()]


class EventRejected(Exception):
    """An event that can never be scored as it is: it goes to the dead-letter topic."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class EventReader(Protocol):
    """How a record's value becomes an event (a dict with `event_id`, `ts` and `features`):
    JSON here, or a schema-registry record (records.py); chosen once at start."""

    def prepare(self, values: Sequence[bytes | None]) -> None:
        """Before a batch is decoded: fetch what it needs (a registry's schemas). Raises
        ServiceUnavailable while that cannot be had: an outage, the batch waits."""

    def fast(self, value: bytes) -> Any:
        """The event, raising anything where it is not one (the checked path then says why)."""

    def checked(self, value: bytes | None, max_event_bytes: int) -> dict[str, object]:
        """The event, or EventRejected naming the fault."""


class JsonEvents:
    """Events as JSON objects (orjson), the default `input_format`."""

    def prepare(self, values: Sequence[bytes | None]) -> None:
        pass

    fast = staticmethod(orjson.loads)

    def checked(self, value: bytes | None, max_event_bytes: int) -> dict[str, object]:
        return parse_event(value, max_event_bytes)


JSON_EVENTS: EventReader = JsonEvents()


@dataclass(frozen=True)
class Reject:
    index: int
    reason: str
    detail: str
    model_version: str = ""  # the version that refused it (set once the batch is scored)


@dataclass
class DecodedBatch:
    """Accepted events as one matrix (rows in `accepted` order) plus the rejects."""

    matrix: np.ndarray
    accepted: list[int] = field(default_factory=list)
    event_ids: list[EventId] = field(default_factory=list)
    event_ts: list[float | None] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)

    def subset(self, rows: list[int]) -> DecodedBatch:
        """These accepted rows as a batch of their own, with no rejects."""
        return DecodedBatch(
            self.matrix[rows],
            [self.accepted[i] for i in rows],
            [self.event_ids[i] for i in rows],
            [self.event_ts[i] for i in rows],
        )

    def keep_rows(self, rows: list[int]) -> None:
        """Keep only these accepted rows (their rejects were recorded by the caller)."""
        kept = self.subset(rows)
        self.matrix, self.accepted = kept.matrix, kept.accepted
        self.event_ids, self.event_ts = kept.event_ids, kept.event_ts


def decode_batch(
    values: Sequence[bytes | None],
    schema: FeatureSchema,
    limits: Limits,
    reader: EventReader = JSON_EVENTS,
) -> DecodedBatch:
    """Decode every value; each one either becomes a matrix row or a `Reject` with a reason.

    Fast path: per event, one orjson parse and three lookups (the feature row in one C call);
    the types are then checked for the whole batch at once. An event the fast path cannot
    take, or that fails the check, goes through `decode_event`, which names its fault (orjson
    refuses NaN, Infinity and numbers beyond float range, so a non-finite number only ever
    arrives through it). A version that accepts missing values reads absent features as
    None; one with categories checks its rows column by column (`_mixed_matrix`).
    """
    features, max_event_bytes = schema.names, limits.max_event_bytes
    getter = _lenient_row_getter if schema.accepts_missing else _row_getter
    row_of = getter(features)
    loads = reader.fast
    rows: list[Sequence[object]] = []
    ids: list[object] = []
    stamps: list[object] = []
    batch = DecodedBatch(matrix=np.empty((0, len(features))))
    for index, value in enumerate(values):
        try:
            if len(value) > max_event_bytes:  # type: ignore[arg-type]  # None: TypeError
                raise EventRejected(Reason.TOO_LARGE, "")
            event = loads(value)  # type: ignore[arg-type]
            row, event_id, ts = row_of(event["features"]), event["event_id"], event.get("ts")
        except Exception:
            try:
                event_id, ts, row = decode_event(value, schema, limits, reader)
            except EventRejected as rejected:
                batch.rejects.append(Reject(index, rejected.reason, rejected.detail))
                continue
        rows.append(row)
        ids.append(event_id)
        stamps.append(ts)
        batch.accepted.append(index)
    well_typed = _well_typed_for(schema)
    if not well_typed(rows, ids, stamps):
        keep = _reject_ill_typed(
            batch, rows, ids, stamps, values=values, schema=schema, limits=limits, reader=reader
        )
        rows, ids, stamps = (
            [rows[i] for i in keep],
            [ids[i] for i in keep],
            [stamps[i] for i in keep],
        )
        batch.accepted = [batch.accepted[i] for i in keep]
    batch.event_ids = ids  # type: ignore[assignment]  # checked above: str or int
    batch.event_ts = [float(ts) if type(ts) is int else ts for ts in stamps]  # type: ignore[misc]
    if schema.all_numbers:  # None (missing, where accepted) becomes NaN
        batch.matrix = np.array(rows, dtype=np.float64).reshape(len(rows), len(features))
    else:
        _mixed_matrix(batch, rows, schema, limits)
    batch.rejects.sort(key=lambda reject: reject.index)
    return batch


_NUMBER_TYPES = frozenset((int, float))  # not bool: type(True) is bool
_NUMBER_OR_MISSING = frozenset((int, float, type(None)))
_ID_TYPES = frozenset((str, int))
_TS_TYPES = frozenset((int, float, type(None)))
_MISSING = type(None)


@functools.lru_cache(maxsize=16)
def _row_getter(features: tuple[str, ...]) -> Callable[[Any], Sequence[object]]:
    """The feature values of one event, in one C call (`itemgetter` gives a tuple)."""
    if len(features) == 1:
        name = features[0]
        return lambda values: (values[name],)
    return operator.itemgetter(*features)


@functools.lru_cache(maxsize=16)
def _lenient_row_getter(features: tuple[str, ...]) -> Callable[[Any], Sequence[object]]:
    """The feature values of one event, None where absent (missing): one C call when every
    feature is there (null counts as there), one `map` over `get` when some are absent."""
    every = _row_getter(features)

    def row_of(values: Any) -> Sequence[object]:
        try:
            return every(values)
        except KeyError:
            return tuple(map(values.get, features))

    return row_of


WellTyped = Callable[[Sequence[Sequence[object]], list[object], list[object]], bool]


def _well_typed_for(schema: FeatureSchema) -> WellTyped:
    """The whole-batch check: the features too for numbers only, the events alone otherwise
    (categories are checked column by column)."""
    if not schema.all_numbers:
        return _well_typed_events
    allowed = _NUMBER_OR_MISSING if schema.accepts_missing else _NUMBER_TYPES

    def well_typed(
        rows: Sequence[Sequence[object]], ids: list[object], stamps: list[object]
    ) -> bool:
        """Every feature an int or a float (or None where missing is accepted), every
        event_id a non-empty string or an int, every ts absent or a finite number: a few
        passes in C over the whole batch."""
        return allowed.issuperset(
            map(type, itertools.chain.from_iterable(rows))
        ) and _well_typed_events(rows, ids, stamps)

    return well_typed


def _well_typed_events(
    rows: Sequence[Sequence[object]], ids: list[object], stamps: list[object]
) -> bool:
    """Every event_id and ts well typed; the features are checked column by column later."""
    return (
        _ID_TYPES.issuperset(map(type, ids))
        and "" not in ids
        and _TS_TYPES.issuperset(map(type, stamps))
        and math.isfinite(sum(ts for ts in stamps if ts is not None))  # type: ignore[misc]
    )


def _reject_ill_typed(
    batch: DecodedBatch,
    rows: list[Sequence[object]],
    ids: list[object],
    stamps: list[object],
    *,
    values: Sequence[bytes | None],
    schema: FeatureSchema,
    limits: Limits,
    reader: EventReader,
) -> list[int]:
    """Check the parsed events one by one: reject each that fails with its reason, through
    `decode_event`; return the positions of the others."""
    well_typed = _well_typed_for(schema)
    keep = []
    for position, index in enumerate(batch.accepted):
        if well_typed([rows[position]], [ids[position]], [stamps[position]]):
            keep.append(position)
            continue
        try:
            decode_event(values[index], schema, limits, reader)
        except EventRejected as rejected:
            batch.rejects.append(Reject(index, rejected.reason, rejected.detail))
        else:  # unreachable while both paths agree; accepting is the safe side
            keep.append(position)
    return keep


def decode_event(
    value: bytes | None,
    schema: FeatureSchema,
    limits: Limits,
    reader: EventReader = JSON_EVENTS,
) -> tuple[EventId, float | None, list[object]]:
    """One event, checked field by field: (event_id, ts, feature row), or EventRejected."""
    event = reader.checked(value, limits.max_event_bytes)
    return event_id_of(event), event_ts_of(event), feature_row(event, schema, limits)


def parse_event(value: bytes | None, max_event_bytes: int) -> dict[str, object]:
    if value is None:
        raise EventRejected(Reason.NOT_AN_OBJECT, "record has no value (tombstone)")
    if len(value) > max_event_bytes:
        raise EventRejected(
            Reason.TOO_LARGE, f"event is {len(value)} bytes, limit is {max_event_bytes}"
        )
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        event = _parse_lenient(value)
    if not isinstance(event, dict):
        raise EventRejected(
            Reason.NOT_AN_OBJECT, f"value is a JSON {type(event).__name__}, not an object"
        )
    return event


def _parse_lenient(value: bytes) -> object:
    """Slow path for what orjson refuses: name the real fault.

    Python producers write NaN and Infinity literals (json.dumps does by default); those parse
    here so the event is rejected for its non-finite feature rather than as broken JSON.
    """
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventRejected(
            Reason.INVALID_UTF8, f"value is not valid UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
    try:
        event = json.loads(text, parse_int=_parse_int)
        orjson.dumps(event)  # lone surrogates parse, but could never be written back out
    except (ValueError, RecursionError) as exc:
        raise EventRejected(Reason.INVALID_JSON, f"value is not valid JSON: {exc}") from None
    except orjson.JSONEncodeError:
        raise EventRejected(
            Reason.INVALID_UTF8, f"value holds a lone UTF-16 surrogate{_where_unwritable(event)}"
        ) from None
    return event


def _where_unwritable(event: object) -> str:
    """' in feature NAME' when that feature's value is the text that cannot be UTF-8."""
    features = event.get("features") if isinstance(event, dict) else None
    for name, value in features.items() if isinstance(features, dict) else ():
        try:
            orjson.dumps(value)
        except orjson.JSONEncodeError:
            return f" in feature {name!r}"
    return ""


def _parse_int(digits: str) -> int | float:
    """Integers beyond float range become inf (then rejected as non-finite), as orjson does."""
    number = int(digits)
    return number if abs(number) < 2**1023 else float("inf")


def event_id_of(event: dict[str, object]) -> EventId:
    if "event_id" not in event:
        raise EventRejected(Reason.MISSING_EVENT_ID, "event has no event_id")
    event_id = event["event_id"]
    if isinstance(event_id, str) and event_id:
        return event_id
    if isinstance(event_id, int) and not isinstance(event_id, bool):
        return event_id
    raise EventRejected(
        Reason.INVALID_EVENT_ID,
        f"event_id must be a non-empty string or an integer, got {event_id!r}",
    )


def event_ts_of(event: dict[str, object]) -> float | None:
    """The event time, optional; when present it must be a finite number of epoch seconds."""
    ts = event.get("ts")
    if ts is None:
        return None
    if isinstance(ts, int | float) and not isinstance(ts, bool) and math.isfinite(ts):
        return float(ts)
    raise EventRejected(Reason.INVALID_TS, f"ts must be epoch seconds, got {ts!r}")


def feature_row(event: dict[str, object], schema: FeatureSchema, limits: Limits) -> list[object]:
    """The event's feature values in the schema's order, each checked against its kind."""
    values = event.get("features")
    if not isinstance(values, dict):
        raise EventRejected(Reason.MISSING_FEATURES, "event has no features object")
    row = [values.get(name) for name in schema.names]
    for name, kind, value in zip(schema.names, schema.kinds, row, strict=True):
        fault = value_fault(name, kind, value, schema.accepts_missing, limits.max_category_chars)
        if fault is not None:
            raise EventRejected(*fault)
    return row


def value_fault(
    name: str, kind: FeatureKind, value: object, accepts_missing: bool, max_chars: int
) -> tuple[str, str] | None:
    """Why `value` cannot be feature `name` of this kind (reason, detail), or None."""
    if value is None:
        if accepts_missing:
            return None
        return Reason.MISSING_FEATURE, f"required feature {name!r} is missing"
    if kind == "number":
        return _number_fault(name, value)
    return _category_fault(name, value, max_chars)


def _number_fault(name: str, value: object) -> tuple[str, str] | None:
    if type(value) not in _NUMBER_TYPES:
        return Reason.NON_NUMERIC_FEATURE, f"feature {name!r} is not a number: {_brief(value)}"
    if not _finite(value):  # type: ignore[arg-type]  # checked: an int or a float
        return Reason.NON_FINITE_FEATURE, f"feature {name!r} is not finite"
    return None


def _category_fault(name: str, value: object, max_chars: int) -> tuple[str, str] | None:
    if type(value) is not str:
        return (
            Reason.INVALID_CATEGORY,
            f"feature {name!r} is a category and takes a string, not a JSON "
            f"{_json_type(value)}: {_brief(value)}",
        )
    if len(value) > max_chars:
        return (
            Reason.CATEGORY_TOO_LONG,
            f"feature {name!r} is {len(value)} characters long, the limit is {max_chars}",
        )
    return None


def _finite(number: float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an integer beyond float range
        return False


def _json_type(value: object) -> str:
    names = {bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _brief(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _mixed_matrix(
    batch: DecodedBatch, rows: list[Sequence[object]], schema: FeatureSchema, limits: Limits
) -> None:
    """The accepted rows as the schema's matrix (features.rows_matrix), after checking every
    value of each kind at once in C; only when that fails is each column checked, and only a
    column that fails value by value."""
    columns = list(zip(*rows, strict=True)) if rows else []
    by_kind: dict[FeatureKind, list[Sequence[object]]] = {"number": [], "category": []}
    for kind, column in zip(schema.kinds, columns, strict=False):
        by_kind[kind].append(column)
    if all(
        _column_ok(
            tuple(itertools.chain.from_iterable(columns_of_kind)),
            kind,
            schema.accepts_missing,
            limits.max_category_chars,
        )
        for kind, columns_of_kind in by_kind.items()
        if columns_of_kind
    ):
        batch.matrix = rows_matrix(schema, rows)
        return
    faults: dict[int, tuple[str, str]] = {}
    for j, (name, kind) in enumerate(zip(schema.names, schema.kinds, strict=True)):
        column = columns[j] if columns else ()
        if _column_ok(column, kind, schema.accepts_missing, limits.max_category_chars):
            continue
        for position, value in enumerate(column):
            if position not in faults:
                fault = value_fault(
                    name, kind, value, schema.accepts_missing, limits.max_category_chars
                )
                if fault is not None:
                    faults[position] = fault
    if faults:
        batch.rejects += [Reject(batch.accepted[p], *fault) for p, fault in faults.items()]
        keep = [p for p in range(len(rows)) if p not in faults]
        rows = [rows[p] for p in keep]
        batch.accepted = [batch.accepted[p] for p in keep]
        batch.event_ids = [batch.event_ids[p] for p in keep]
        batch.event_ts = [batch.event_ts[p] for p in keep]
    batch.matrix = rows_matrix(schema, rows)


def _column_ok(values: Sequence[object], kind: FeatureKind, missing: bool, max_chars: int) -> bool:
    """Every value is of its kind: a pass or two in C. (Numbers need no finiteness check: orjson
    parses none that are not finite, and what it refuses went through `decode_event`.)"""
    types = set(map(type, values))
    if missing:
        types.discard(_MISSING)
    if kind == "number":
        return _NUMBER_TYPES.issuperset(types)
    # filter(None, ...) leaves out None and empty strings, which are never too long
    return types <= {str} and max(map(len, filter(None, values)), default=0) <= max_chars  # type: ignore[arg-type]


def encode_predictions(
    batch: DecodedBatch,
    scores: np.ndarray,
    scored_at: float,
    labels: Sequence[tuple[str, str]],
    which: Sequence[int] | None = None,
) -> list[bytes]:
    """One prediction JSON per accepted event, in `batch.accepted` order. `labels`: the
    batch's (model_version, arm) pairs; `which`: each row's index into them (None: all the
    first).

    The same bytes as `orjson.dumps` of the record, field order included, but only the three
    per-event values are serialised per event; the rest is built once per batch. A NaN score
    is written as null, as orjson writes it.
    """
    dumps, join = orjson.dumps, b"".join
    heads = [
        b',"model_version":' + dumps(version) + b',"arm":' + dumps(arm) + b',"score":'
        for version, arm in labels
    ]
    row_heads = itertools.repeat(heads[0]) if which is None else [heads[i] for i in which]
    tail = b',"scored_at":' + dumps(scored_at) + b"}"
    return [
        join(
            (
                b'{"event_id":',
                dumps(event_id),
                head,
                dumps(score),
                b',"event_ts":',
                dumps(ts),
                tail,
            )
        )
        # not strict: `row_heads` repeats without end when every row has the same label
        for event_id, ts, score, head in zip(
            batch.event_ids, batch.event_ts, scores.tolist(), row_heads, strict=False
        )
    ]
