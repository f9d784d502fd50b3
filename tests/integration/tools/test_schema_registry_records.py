"""A real schema registry (Apicurio Registry's Confluent-compatible API): `scorer stack up
--schema-registry` starts and stops it, the client registers and is refused in one line, and
`scorer loadgen --format avro` writes Confluent wire-format records under the schema it
registered for the topic, good ones that decode to the events and malformed ones that cannot."""

from __future__ import annotations

import io
import struct
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastavro import parse_schema, schemaless_reader
from kafka import KafkaConsumer

from tests.conftest import run_scorer
from tests.integration.conftest import RegistryServer
from tests.integration.tools.test_stack_and_demo import alive
from worker.errors import ServiceUnavailable
from worker.infra.schema_registry import SchemaRefused, SchemaRegistry, UnknownSchema
from worker.settings import Settings
from worker.tools.avro_events import event_schema
from worker.tools.ctr import FEATURES as CTR_FEATURES
from worker.tools.synthetic import FEATURES

pytestmark = pytest.mark.integration


def test_stack_up_with_a_schema_registry_exports_its_api_and_down_stops_it(
    tmp_path: Path,
) -> None:
    up = run_scorer(
        None, "stack", "up", "--state-dir", "s", "--broker", "tansu", "--schema-registry",
        cwd=tmp_path,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in up.stdout.splitlines()
        if line.startswith("export ")
    )
    url = exports["SCORER_SCHEMA_REGISTRY_URL"]
    pid = int(up.stdout.split("Apicurio Registry pid ")[1].split(";")[0])
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/apis/ccompat/v7")
        assert SchemaRegistry(url).subjects() == []
    finally:
        down = run_scorer(None, "stack", "down", "--state-dir", "s", cwd=tmp_path)
    assert down.returncode == 0 and not alive(pid)


def test_the_client_registers_once_and_a_refusal_is_one_line(
    schema_registry: RegistryServer,
) -> None:
    schema = orjson.dumps(event_schema("ads")).decode()
    first = schema_registry.client.register("client-test-value", schema)

    assert schema_registry.client.register("client-test-value", schema) == first
    assert "client-test-value" in schema_registry.client.subjects()
    with pytest.raises(SchemaRefused) as refused:
        schema_registry.client.register("client-test-value", '{"type": "recrod"}')
    assert "refused /subjects/client-test-value/versions" in str(refused.value)
    assert "\n" not in str(refused.value)
    with pytest.raises(ServiceUnavailable, match=r"schema registry http://127\.0\.0\.1:9/"):
        SchemaRegistry("http://127.0.0.1:9/apis/ccompat/v7", timeout_s=2).subjects()
    assert schema_registry.client.schema(first).text == schema
    with pytest.raises(UnknownSchema, match="not found"):
        schema_registry.client.schema(first + 1_000_000)
    # not the API (its path left out): an outage to wait out, never "no such schema"
    not_the_api = SchemaRegistry(schema_registry.url.removesuffix("/apis/ccompat/v7"))
    with pytest.raises(ServiceUnavailable) as wrong_url:
        not_the_api.schema(first)
    assert not isinstance(wrong_url.value, UnknownSchema)


@pytest.mark.parametrize(("profile", "features"), [("ads", FEATURES), ("ctr", CTR_FEATURES)])
def test_loadgen_writes_wire_format_records_under_the_topics_schema(
    settings: Settings,
    scorer_main: Any,
    schema_registry: RegistryServer,
    profile: str,
    features: tuple[str, ...],
) -> None:
    """A quarter malformed: a wrong magic byte, a payload cut short, an unknown schema id, a
    payload of another record; the rest decode, with the schema the registry holds for the
    id they carry, to events with every feature (None where missing)."""
    settings = settings.replace(schema_registry_url=schema_registry.url)
    done = scorer_main(
        settings, "loadgen", "--count", "80", "--bad-fraction", "0.25", "--format", "avro",
        "--profile", profile, "--seed", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    bad = orjson.loads(done.stdout)["bad"]
    values = _records(settings)
    assert len(values) == 80 and 0 < bad < 80

    good, faults = {}, []
    for key, value in values.items():
        try:
            good[key] = _decoded(schema_registry.url, value)
        except ValueError as fault:
            faults.append(str(fault).split(":")[0])
    assert len(faults) == bad and set(faults) <= {"magic", "unknown id", "payload"}
    assert {"magic", "unknown id", "payload"} <= set(faults) or bad < 4
    for key, event in good.items():
        assert event["event_id"] == key and event["ts"] > 1e9
        assert tuple(event["features"]) == features
    if profile == "ctr":
        assert any(v is None for e in good.values() for v in e["features"].values())


def _records(settings: Settings) -> dict[str, bytes]:
    consumer = KafkaConsumer(
        settings.input_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        fetch_max_wait_ms=100,
    )
    try:
        return {record.key.decode(): record.value for record in consumer}
    finally:
        consumer.close()


def _decoded(url: str, value: bytes) -> dict[str, Any]:
    """A record as a reader of the wire format decodes it; ValueError naming the fault."""
    if value[:1] != b"\x00":
        raise ValueError("magic: not a registry record")
    (schema_id,) = struct.unpack(">I", value[1:5])
    try:
        with urllib.request.urlopen(f"{url}/schemas/ids/{schema_id}", timeout=5) as response:
            schema = orjson.loads(orjson.loads(response.read())["schema"])
    except urllib.error.HTTPError as exc:
        raise ValueError(f"unknown id: {schema_id} ({exc.code})") from None
    payload = io.BytesIO(value[5:])
    try:
        event: dict[str, Any] = schemaless_reader(payload, parse_schema(schema))  # type: ignore[assignment]
    except (EOFError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"payload: {exc}") from None
    if payload.tell() != len(value) - 5 or not isinstance(event.get("features"), dict):
        raise ValueError("payload: not one whole event")
    return event
