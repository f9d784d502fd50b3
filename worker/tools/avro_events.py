"""Loadgen's events as Avro records in the Confluent wire format, under a schema registered
for the topic (TopicNameStrategy: subject `<topic>-value`): the fields of the JSON event
(`event_id`, `ts` in seconds, a nested `features` record), each profile's features typed as its
JSON values are (numbers as doubles; CTR counts as longs and categories as strings, each in a
union with null for a missing value).

Malformed records, each of which a reader must dead-letter: a wrong magic byte, a payload cut
short, a schema id the registry does not know, and a payload of another record.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from worker.infra.schema_registry import SchemaRegistry
from worker.stream.wire import framed
from worker.tools.ctr import CATEGORIES, COUNTS
from worker.tools.synthetic import FEATURES

Encode = Callable[[str, Mapping[str, object]], bytes]


def event_schema(profile: str) -> dict[str, Any]:
    """The Avro schema of a profile's events."""
    if profile == "ctr":
        fields = [{"name": n, "type": ["null", "long"], "default": None} for n in COUNTS]
        fields += [{"name": n, "type": ["null", "string"], "default": None} for n in CATEGORIES]
    else:
        fields = [{"name": n, "type": "double"} for n in FEATURES]
    return {
        "type": "record",
        "name": "AdClickEvent",
        "namespace": "scorer.loadgen",
        "fields": [
            {"name": "event_id", "type": "string"},
            {"name": "ts", "type": "double"},
            {"name": "features", "type": {"type": "record", "name": "Features", "fields": fields}},
        ],
    }


def avro_encoder(registry: SchemaRegistry, topic: str, profile: str) -> tuple[int, Encode]:
    """The schema's id once registered, and what turns (event_id, features) into a record."""
    from fastavro import parse_schema, schemaless_writer

    schema = event_schema(profile)
    schema_id = registry.register(f"{topic}-value", orjson.dumps(schema).decode())
    parsed = parse_schema(schema)

    def encode(event_id: str, features: Mapping[str, object]) -> bytes:
        out = io.BytesIO()
        datum = {"event_id": event_id, "ts": time.time(), "features": features}
        schemaless_writer(out, parsed, datum)
        return framed(schema_id, out.getvalue())

    return schema_id, encode


def malformed_record(good: bytes, schema_id: int, variant: int) -> bytes:
    """One of the four malformed records, from a good one."""
    payload = good[5:]
    choices: Sequence[bytes] = (
        b"\x01" + good[1:],  # wrong magic byte
        good[: 5 + len(payload) // 2],  # payload cut short
        framed(schema_id + 1_000_000, payload),  # a schema id the registry does not know
        framed(schema_id, b"\x02"),  # another record: an event_id of one byte, then nothing
    )
    return choices[variant % len(choices)]
