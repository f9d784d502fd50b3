"""Schema-registry records decoded into the batch a JSON event makes: features at the top or
in a nested record or map, an alias for a renamed field, Avro's timestamps, a null branch as
missing, and one dead-letter reason for each way a record is broken; random bytes after a
valid header never crash the batch."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.errors import ServiceUnavailable
from worker.infra.schema_registry import (
    RegisteredSchema,
    SchemaRegistry,
    SchemaType,
    UnknownSchema,
)
from worker.models.features import CATEGORY, NUMBER, FeatureSchema
from worker.stream.events import Limits, Reason, decode_batch
from worker.stream.records import AutoEvents, RegistryEvents
from worker.stream.wire import framed

LIMITS = Limits(100_000)
NUMBERS = FeatureSchema.numbers(("a", "b"))


class Held(SchemaRegistry):
    """Schemas by id, as a registry holds them (the real one: tests/integration); `down`
    makes it unreachable."""

    def __init__(self, schemas: dict[int, tuple[SchemaType, str]]) -> None:
        super().__init__("http://unused")
        self.schemas = schemas
        self.down = False
        self.asked: list[int] = []

    def schema(self, schema_id: int) -> RegisteredSchema:
        self.asked.append(schema_id)
        if self.down:
            raise ServiceUnavailable("schema registry http://unused: Connection refused")
        if schema_id not in self.schemas:
            raise UnknownSchema(f"Schema {schema_id} not found.")
        kind, text = self.schemas[schema_id]
        return RegisteredSchema(schema_id, kind, text)


def record(fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "record", "name": "Event", "fields": fields}


NESTED = record(
    [
        {"name": "event_id", "type": "string"},
        {"name": "ts", "type": "double"},
        {
            "name": "features",
            "type": record([{"name": "a", "type": "double"}, {"name": "b", "type": "double"}])
            | {"name": "Features"},
        },
    ]
)
FLAT = record(
    [
        {"name": "event_id", "type": "long"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "a", "type": "double"},
        {"name": "renamed_b", "type": "double", "aliases": ["b"]},
        {"name": "extra", "type": ["null", "string"], "default": None},
    ]
)
MAP = record(
    [
        {"name": "event_id", "type": "string"},
        {"name": "features", "type": {"type": "map", "values": ["null", "double", "string"]}},
    ]
)
SCHEMAS: dict[int, tuple[SchemaType, str]] = {
    1: ("AVRO", orjson.dumps(NESTED).decode()),
    2: ("AVRO", orjson.dumps(FLAT).decode()),
    3: ("AVRO", orjson.dumps(MAP).decode()),
    4: ("PROTOBUF", 'syntax = "proto3"; message E { string event_id = 1; }'),
    5: ("AVRO", '"string"'),
}


def encoded(schema_id: int, datum: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(orjson.loads(SCHEMAS[schema_id][1])), datum)
    return framed(schema_id, out.getvalue())


def decoded(values: Sequence[bytes | None], schema: FeatureSchema = NUMBERS) -> Any:
    reader = RegistryEvents(Held(SCHEMAS))
    reader.prepare(values)
    return decode_batch(values, schema, LIMITS, reader)


def test_features_nested_at_the_top_or_in_a_map_and_by_alias_read_as_json_would() -> None:
    values = [
        encoded(1, {"event_id": "n", "ts": 1.5, "features": {"a": 1.0, "b": 2.0}}),
        encoded(2, {"event_id": 7, "ts": 1_700_000_000_250, "a": 3.0, "renamed_b": 4.0}),
        encoded(3, {"event_id": "m", "features": {"a": 5.0, "b": 6.0}}),
    ]

    batch = decoded(values)

    assert batch.rejects == []
    assert batch.matrix.tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert batch.event_ids == ["n", 7, "m"]
    assert batch.event_ts == [1.5, 1_700_000_000.25, None]


def test_a_null_branch_is_missing_and_a_version_that_takes_none_dead_letters_it() -> None:
    values = [encoded(3, {"event_id": "m", "features": {"a": None, "b": 1.0}})]
    takes = FeatureSchema(("a", "b"), (NUMBER, NUMBER), accepts_missing=True)

    assert np.isnan(decoded(values, takes).matrix[0, 0])
    [reject] = decoded(values).rejects
    assert reject.reason == Reason.MISSING_FEATURE and "'a'" in reject.detail


def test_a_non_finite_double_is_refused_as_in_json_where_nan_cannot_be_written() -> None:
    values = [encoded(1, {"event_id": "n", "ts": 1.0, "features": {"a": math.inf, "b": 0.0}})]
    takes = FeatureSchema(("a", "b"), (NUMBER, NUMBER), accepts_missing=True)

    [reject] = decoded(values, takes).rejects
    assert reject.reason == Reason.NON_FINITE_FEATURE and "'a'" in reject.detail


def test_a_category_of_another_type_is_named() -> None:
    values = [encoded(3, {"event_id": "m", "features": {"a": 1.0, "b": 2.0}})]
    schema = FeatureSchema(("a", "b"), (NUMBER, CATEGORY))

    [reject] = decoded(values, schema).rejects
    assert reject.reason == Reason.INVALID_CATEGORY and "'b'" in reject.detail


@pytest.mark.parametrize(
    ("value", "reason", "detail"),
    [
        (b'{"event_id": "j"}', Reason.INVALID_WIRE_FORMAT, "input_format = auto reads both"),
        (b"\x00\x00\x01", Reason.INVALID_WIRE_FORMAT, "shorter than the wire format's"),
        (framed(99, b"\x02a"), Reason.UNKNOWN_SCHEMA, "no schema of id 99"),
        (framed(4, b"\x0a\x01j"), Reason.UNSUPPORTED_SCHEMA, "a PROTOBUF schema, not Avro"),
        (framed(5, b"\x02a"), Reason.UNSUPPORTED_SCHEMA, "not an Avro record"),
        (framed(1, b"\x02a"), Reason.SCHEMA_MISMATCH, "does not decode with schema 1"),
        (framed(3, b"\x02m\x00\x00"), Reason.SCHEMA_MISMATCH, "1 bytes after a record"),
        (None, Reason.NOT_AN_OBJECT, "tombstone"),
    ],
)
def test_each_broken_record_gets_one_reason_and_the_rest_of_the_batch_scores(
    value: bytes | None, reason: str, detail: str
) -> None:
    good = encoded(3, {"event_id": "m", "features": {"a": 1.0, "b": 2.0}})

    batch = decoded([good, value, good])

    assert batch.accepted == [0, 2]
    [reject] = batch.rejects
    assert reject.index == 1 and reject.reason == reason and detail in reject.detail


def test_schemas_are_fetched_once_and_an_unknown_id_is_asked_again_only_later() -> None:
    registry = Held(SCHEMAS)
    reader = RegistryEvents(registry)
    values = [framed(1, b""), framed(3, b""), framed(99, b""), framed(1, b"")]

    for _ in range(5):
        reader.prepare(values)

    assert sorted(registry.asked) == [1, 3, 99]


def test_the_cache_keeps_the_schemas_used_last() -> None:
    registry = Held(SCHEMAS)
    reader = RegistryEvents(registry, cache_size=2)
    for schema_id in (1, 2, 3, 1):
        reader.prepare([framed(schema_id, b"")])
    assert registry.asked == [1, 2, 3, 1]


def test_a_registry_that_cannot_be_reached_is_an_outage_not_bad_input() -> None:
    registry = Held(SCHEMAS)
    registry.down = True
    reader = RegistryEvents(registry)
    with pytest.raises(ServiceUnavailable):
        reader.prepare([framed(1, b"")])
    registry.down = False
    reader.prepare([framed(1, b"")])  # asked again: nothing was remembered of the outage
    assert registry.asked == [1, 1]


def test_auto_reads_json_and_registry_records_side_by_side() -> None:
    reader = AutoEvents(RegistryEvents(Held(SCHEMAS)))
    values = [
        b'{"event_id": "j", "features": {"a": 1, "b": 2}}',
        encoded(3, {"event_id": "m", "features": {"a": 3.0, "b": 4.0}}),
    ]
    reader.prepare(values)

    batch = decode_batch(values, NUMBERS, LIMITS, reader)

    assert batch.event_ids == ["j", "m"] and batch.matrix.tolist() == [[1, 2], [3, 4]]


@settings(max_examples=300, deadline=None)
@given(schema_id=st.sampled_from([1, 2, 3]), payload=st.binary(max_size=64))
def test_random_bytes_after_a_valid_header_score_or_get_one_reason(
    schema_id: int, payload: bytes
) -> None:
    batch = decoded([framed(schema_id, payload)])
    assert len(batch.accepted) + len(batch.rejects) == 1
    assert all(r.reason in Reason.codes() for r in batch.rejects)


def test_a_writer_schema_without_a_needed_feature_is_missing_it() -> None:
    """Schema evolution: a writer that dropped `b` (the version needs it) dead-letters the
    event as missing_feature, or scores it as missing where the version takes that."""
    values = [encoded(2, {"event_id": 7, "ts": 0, "a": 1.0, "renamed_b": 2.0})]
    needs_c = FeatureSchema(("a", "c"), (NUMBER, NUMBER))
    takes = FeatureSchema(("a", "c"), (NUMBER, NUMBER), accepts_missing=True)

    [reject] = decoded(values, needs_c).rejects
    assert reject.reason == Reason.MISSING_FEATURE and "'c'" in reject.detail
    assert decoded(values, takes).matrix[0, 0] == 1.0
    assert np.isnan(decoded(values, takes).matrix[0, 1])


def one_event(schema: dict[str, Any], datum: dict[str, Any]) -> Any:
    """`datum` written with `schema` (id 9) and read back as a worker reads it."""
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(schema), datum)
    reader = RegistryEvents(Held({9: ("AVRO", orjson.dumps(schema).decode())}))
    value = framed(9, out.getvalue())
    reader.prepare([value])
    return reader.checked(value, 10_000)


def test_a_fields_own_name_wins_over_another_fields_alias() -> None:
    schema = record(
        [
            {"name": "event_id", "type": "string"},
            {"name": "a", "type": "double"},
            {"name": "a_new", "type": "double", "aliases": ["a"]},
        ]
    )
    event = one_event(schema, {"event_id": "x", "a": 1.0, "a_new": 99.0})
    assert event["features"]["a"] == 1.0


def test_logical_types_read_as_a_json_event_holds_them() -> None:
    """A uuid event_id as its text; a local-timestamp (no zone) as UTC seconds."""
    schema = record(
        [
            {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "ts", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
            {"name": "a", "type": "double"},
        ]
    )
    uid = "6a2f41a3-c54c-fce8-32d2-0324e1c32e22"
    event = one_event(schema, {"event_id": uid, "ts": 1_700_000_000_000, "a": 1.0})
    assert event["event_id"] == uid and event["ts"] == 1_700_000_000.0


def test_features_may_be_a_record_named_before_rather_than_spelt_out() -> None:
    inner = record([{"name": "a", "type": "double"}]) | {"name": "F"}
    schema = record(
        [
            {"name": "event_id", "type": "string"},
            {"name": "previous", "type": ["null", inner], "default": None},
            {"name": "features", "type": "F"},
        ]
    )
    event = one_event(schema, {"event_id": "x", "previous": None, "features": {"a": 2.0}})
    assert event["features"] == {"a": 2.0}


def test_a_batch_naming_more_schemas_than_the_cache_holds_keeps_them_all_for_itself() -> None:
    reader = RegistryEvents(Held(SCHEMAS), cache_size=1)
    values = [
        encoded(1, {"event_id": "n", "ts": 1.5, "features": {"a": 1.0, "b": 2.0}}),
        encoded(3, {"event_id": "m", "features": {"a": 5.0, "b": 6.0}}),
    ]
    reader.prepare(values)
    assert decode_batch(values, NUMBERS, LIMITS, reader).rejects == []
