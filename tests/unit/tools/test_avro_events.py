"""Loadgen's Avro records and the schema registry's Java: the wire format's layout, every
profile's event through its schema and back, the malformed records, and the JDK chosen."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import orjson
import pytest
from fastavro import parse_schema, schemaless_reader

from worker.errors import ConfigError
from worker.infra.schema_registry import SchemaRegistry, SchemaType
from worker.stream.wire import framed
from worker.tools import apicurio
from worker.tools.avro_events import avro_encoder, event_schema, malformed_record
from worker.tools.ctr import ctr_frame, event_features
from worker.tools.synthetic import FEATURES


class Registered(SchemaRegistry):
    """A registry that hands out one id and talks to nothing (the real one:
    tests/integration)."""

    def __init__(self) -> None:
        super().__init__("http://unused")
        self.held: dict[str, str] = {}

    def register(self, subject: str, schema: str, schema_type: SchemaType = "AVRO") -> int:
        self.held[subject] = schema
        return 7


def test_a_record_is_a_zero_byte_the_id_in_four_big_endian_bytes_then_the_payload() -> None:
    assert framed(258, b"avro") == b"\x00\x00\x00\x01\x02avro"


@pytest.mark.parametrize("profile", ["ads", "ctr"])
def test_each_profiles_event_goes_through_its_schema_and_back(profile: str) -> None:
    registry = Registered()
    features = (
        event_features(ctr_frame(30, seed=1))[3]
        if profile == "ctr"
        else dict.fromkeys(FEATURES, 0.5)
    )
    schema_id, encode = avro_encoder(registry, "clicks", profile)

    value = encode("e-1", features)

    assert schema_id == 7 and value[:5] == b"\x00\x00\x00\x00\x07"
    schema = orjson.loads(registry.held["clicks-value"])
    assert schema == event_schema(profile)
    event = schemaless_reader(io.BytesIO(value[5:]), parse_schema(schema))
    assert isinstance(event, dict)
    assert event["event_id"] == "e-1" and event["features"] == features


def test_the_malformed_records_are_each_broken_one_way() -> None:
    good = framed(7, b"\x06e-1" + b"\x00" * 8)
    magic, short, unknown, other = (malformed_record(good, 7, variant) for variant in range(4))
    assert magic[:1] == b"\x01" and magic[1:] == good[1:]
    assert short[:5] == good[:5] and len(short) < len(good)
    assert unknown[5:] == good[5:] and unknown[1:5] != good[1:5]
    assert other == framed(7, b"\x02")


def fake_java(root: Path, name: str, version: str) -> Path:
    java = root / name / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2026-04-21' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return java


def test_the_newest_jdk_of_21_or_later_runs_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PATH's Java 17 (as on these machines) is passed over for the newest installed one."""
    old = fake_java(tmp_path, "java-17", "17.0.15")
    newest = fake_java(tmp_path, "temurin-25", "25.0.3")
    fake_java(tmp_path, "temurin-21", "21.0.7")
    monkeypatch.setattr(apicurio, "_JVM_ROOT", tmp_path)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", f"{old.parent}{os.pathsep}{os.environ['PATH']}")

    assert apicurio.java_binary() == str(newest)


def test_without_java_21_the_registry_is_a_one_line_refusal_naming_what_there_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = fake_java(tmp_path, "java-17", "17.0.15")
    monkeypatch.setattr(apicurio, "_JVM_ROOT", tmp_path)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(old.parent))

    with pytest.raises(ConfigError) as refused:
        apicurio.java_binary()
    assert str(refused.value) == (
        "Apicurio Registry needs Java 21 or newer (found: Java 17); install one, or set "
        "JAVA_HOME to it"
    )
