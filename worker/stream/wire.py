"""The Confluent wire format of a schema-registry record: a zero magic byte, the schema's
registry id as four big-endian bytes, then the payload (Avro's binary encoding of one datum,
without a container header). Quix Streams, Flink, Kafka Streams and Kafka Connect read it."""

from __future__ import annotations

import struct

MAGIC = b"\x00"
_ID = struct.Struct(">I")


def framed(schema_id: int, payload: bytes) -> bytes:
    """A record's value: header and payload."""
    return MAGIC + _ID.pack(schema_id) + payload


HEADER_BYTES = 1 + _ID.size


def schema_id_of(value: bytes | None) -> int | None:
    """The schema id a record names, None where it is not a registry record."""
    if value is None or len(value) < HEADER_BYTES or value[0] != 0:
        return None
    return int(_ID.unpack_from(value, 1)[0])
