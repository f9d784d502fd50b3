"""Schema-registry records as events: the Confluent wire format (wire.py), each schema fetched
once per id from the registry and kept (bounded), Avro payloads read by fastavro's schemaless
reader with the parsed writer schema. `input_format = auto` reads a registry record where the
value starts with 0x00, JSON otherwise.

An Avro event is the record with `event_id` (string or long) and `ts` (optional: a double in
seconds, or a long with `timestamp-millis` / `timestamp-micros`); its features are the fields
of a nested `features` record or map, else the record's own fields, by name or by an Avro
alias of the field (so a writer that renamed a field, keeping its old name as an alias, still
feeds the version). A null union branch, or a field the writer schema lacks, is a missing
value; everything after that is checked as a JSON event is (events.py), feature named.
"""

from __future__ import annotations

import io
import math
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from worker.errors import ConfigError, ServiceUnavailable
from worker.infra.schema_registry import RegisteredSchema, SchemaRegistry, UnknownSchema
from worker.stream.events import JSON_EVENTS, EventReader, EventRejected, Reason
from worker.stream.wire import HEADER_BYTES, schema_id_of

SCHEMA_CACHE_SIZE = 1000  # schema ids kept per worker; the oldest used is dropped beyond
_NOT_FOUND_RETRY = 30  # batches before an id the registry did not know is asked again


@dataclass(frozen=True)
class AvroDecoder:
    """One writer schema, parsed once: its payloads into events."""

    schema_id: int
    read: Callable[[Any], object]
    features_field: str | None  # the nested record or map holding the features, if any
    aliases: Mapping[str, str]  # a feature's other name -> the field's name in this schema
    has_floats: bool  # a float or a double may be NaN or infinite in Avro (never in JSON)

    def event(self, payload: bytes) -> dict[str, object]:
        """The payload as an event; EventRejected where it does not decode whole."""
        stream = io.BytesIO(payload)
        try:
            record = self.read(stream)
        except Exception as exc:  # fastavro raises what the bytes make it (EOF, index, UTF-8)
            raise EventRejected(
                Reason.SCHEMA_MISMATCH,
                f"payload does not decode with schema {self.schema_id}: "
                f"{type(exc).__name__}: {str(exc)[:120]}",
            ) from None
        if stream.tell() != len(payload):
            raise EventRejected(
                Reason.SCHEMA_MISMATCH,
                f"payload has {len(payload) - stream.tell()} bytes after a record of schema "
                f"{self.schema_id}",
            )
        assert isinstance(record, dict)  # a record schema reads as a dict
        features = record.get(self.features_field) if self.features_field else record
        if isinstance(features, dict) and self.aliases:  # a field's own name comes first
            features = {**_renamed(features, self.aliases), **features}
        event: dict[str, object] = {"features": features}
        if "event_id" in record:
            event_id = record["event_id"]  # a `uuid` logical type reads as a UUID: its text
            event["event_id"] = str(event_id) if isinstance(event_id, uuid.UUID) else event_id
        if "ts" in record:
            event["ts"] = _seconds(record["ts"])
        return event


def _seconds(ts: object) -> object:
    """A timestamp logical type's datetime as epoch seconds (a local-timestamp, which has no
    zone, read as UTC); anything else as it is, for the checks to judge."""
    if not isinstance(ts, datetime):
        return ts
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


def _renamed(features: dict[str, object], aliases: Mapping[str, str]) -> dict[str, object]:
    return {alias: features[name] for alias, name in aliases.items() if name in features}


def avro_decoder(registered: RegisteredSchema) -> AvroDecoder:
    """The decoder of an Avro record schema; EventRejected (unsupported_schema) for any
    other."""
    from fastavro import parse_schema, schemaless_reader

    if registered.schema_type != "AVRO":
        raise _unsupported(registered, f"a {registered.schema_type} schema, not Avro")
    try:
        schema = orjson.loads(registered.text)
        parsed = parse_schema(schema)
    except Exception as exc:
        raise _unsupported(registered, f"not a valid Avro schema: {str(exc)[:120]}") from None
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise _unsupported(registered, "not an Avro record")
    fields = {field["name"]: field for field in schema.get("fields", [])}
    nested = fields.get("features")
    spelt = _branch(nested["type"]) if nested else None
    nested_type: object = _named(schema).get(spelt, spelt) if isinstance(spelt, str) else spelt
    features_field = "features" if isinstance(nested_type, dict) else None
    feature_fields: list[Any] = (
        list(nested_type.get("fields", []))
        if isinstance(nested_type, dict)
        else list(fields.values())
    )
    aliases = {
        alias: field["name"]
        for field in feature_fields
        for alias in field.get("aliases", ())
        if isinstance(field, dict)
    }
    text = registered.text
    return AvroDecoder(
        registered.schema_id,
        lambda stream: schemaless_reader(stream, parsed),
        features_field,
        aliases,
        '"float"' in text or '"double"' in text,
    )


def _named(schema: object) -> dict[str, dict[str, Any]]:
    """Every named record or map in the schema by its name (a field may name a type defined
    earlier instead of spelling it out)."""
    found: dict[str, dict[str, Any]] = {}
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if isinstance(node.get("name"), str) and node.get("type") == "record":
                found[node["name"]] = node
                if node.get("namespace"):
                    found[f"{node['namespace']}.{node['name']}"] = node
            stack.extend(node.values())
    return found


def _branch(kind: object) -> object:
    """A union's non-null branch (["null", X] -> X); anything else as it is."""
    if isinstance(kind, list):
        others = [k for k in kind if k != "null"]
        return others[0] if len(others) == 1 else kind
    return kind


def _unsupported(registered: RegisteredSchema, why: str) -> EventRejected:
    return EventRejected(Reason.UNSUPPORTED_SCHEMA, f"schema {registered.schema_id} is {why}")


class RegistryEvents:
    """Registry records as events: the reader for `input_format = avro`."""

    def __init__(self, registry: SchemaRegistry, cache_size: int = SCHEMA_CACHE_SIZE) -> None:
        self._registry = registry
        self._cache_size = cache_size
        self._decoders: OrderedDict[int, AvroDecoder | EventRejected] = OrderedDict()
        self._not_found: dict[int, int] = {}  # id -> batches left before asking again

    def prepare(self, values: Sequence[bytes | None]) -> None:
        """Every schema id the batch names, fetched if not held; ServiceUnavailable while the
        registry cannot be reached (nothing is dead-lettered for it)."""
        named = {schema_id_of(value) for value in values} - {None}
        for schema_id in named:
            assert schema_id is not None
            if schema_id in self._decoders:
                self._decoders.move_to_end(schema_id)
            elif self._not_found.get(schema_id, 0) <= 0:
                self._fetch(schema_id)
        self._not_found = {k: left - 1 for k, left in self._not_found.items() if left > 1}
        while len(self._decoders) > self._cache_size:  # the oldest used, never this batch's
            oldest = next(iter(self._decoders))
            if oldest in named:
                break
            del self._decoders[oldest]

    def _fetch(self, schema_id: int) -> None:
        try:
            registered = self._registry.schema(schema_id)
        except UnknownSchema:
            self._not_found[schema_id] = _NOT_FOUND_RETRY
            return
        except ServiceUnavailable:
            raise
        try:
            decoder: AvroDecoder | EventRejected = avro_decoder(registered)
        except EventRejected as rejected:
            decoder = rejected
        self._decoders[schema_id] = decoder

    def fast(self, value: bytes) -> dict[str, object]:
        """As `checked`, and raising where a number is not finite (JSON has none: the
        batch-wide checks of events.py take that as given), for the checked path to name."""
        decoder = self._decoder(value)
        event = decoder.event(value[HEADER_BYTES:])
        features = event["features"]
        if decoder.has_floats and isinstance(features, dict):
            for number in features.values():
                if type(number) is float and not math.isfinite(number):
                    raise ValueError("a feature is not finite")
        return event

    def checked(self, value: bytes | None, max_event_bytes: int) -> dict[str, object]:
        if value is None:
            raise EventRejected(Reason.NOT_AN_OBJECT, "record has no value (tombstone)")
        if len(value) > max_event_bytes:
            raise EventRejected(
                Reason.TOO_LARGE, f"event is {len(value)} bytes, limit is {max_event_bytes}"
            )
        return self._decoder(value).event(value[HEADER_BYTES:])

    def _decoder(self, value: bytes) -> AvroDecoder:
        schema_id = schema_id_of(value)
        if schema_id is None:
            raise EventRejected(Reason.INVALID_WIRE_FORMAT, _not_wire_format(value))
        decoder = self._decoders.get(schema_id)
        if decoder is None:
            raise EventRejected(
                Reason.UNKNOWN_SCHEMA, f"the schema registry holds no schema of id {schema_id}"
            )
        if isinstance(decoder, EventRejected):
            raise decoder
        return decoder


def _not_wire_format(value: bytes) -> str:
    if len(value) < HEADER_BYTES:
        return f"record is {len(value)} bytes, shorter than the wire format's 5-byte header"
    hint = " (a JSON event: input_format = auto reads both)" if value[:1] == b"{" else ""
    return f"first byte is 0x{value[0]:02x}, not the wire format's magic 0x00{hint}"


class AutoEvents:
    """`input_format = auto`: a registry record where the value starts with 0x00, else JSON."""

    def __init__(self, records: RegistryEvents) -> None:
        self._records = records

    def prepare(self, values: Sequence[bytes | None]) -> None:
        self._records.prepare(values)

    def fast(self, value: bytes) -> Any:
        return self._records.fast(value) if value[:1] == b"\x00" else JSON_EVENTS.fast(value)

    def checked(self, value: bytes | None, max_event_bytes: int) -> dict[str, object]:
        if value is not None and value[:1] == b"\x00":
            return self._records.checked(value, max_event_bytes)
        return JSON_EVENTS.checked(value, max_event_bytes)


def event_reader(input_format: str, schema_registry_url: str) -> EventReader:
    """The reader `input_format` names, chosen once at start (refused then, in one line,
    without fastavro)."""
    if input_format == "json":
        return JSON_EVENTS
    try:
        import fastavro  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"input_format={input_format} needs fastavro: pip install 'scorer-worker[avro]'"
        ) from None
    records = RegistryEvents(SchemaRegistry(schema_registry_url))
    return AutoEvents(records) if input_format == "auto" else records
