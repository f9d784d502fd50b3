"""A worker reading schema-registry records (input_format = avro) from Apache Kafka, with a
real registry (Apicurio): each score equals the model's on the same features, each broken
record is dead-lettered with its reason, and a registry that cannot be reached is an outage
(the batch waits, /readyz says why, nothing is dead-lettered) that the worker rides out."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from fastavro import parse_schema, schemaless_writer
from kafka import KafkaProducer, TopicPartition

from tests.conftest import TopicReader, committed, wait_until
from tests.integration.conftest import RegistryServer
from worker.infra.schema_registry import SchemaRegistry
from worker.settings import Settings
from worker.stream.wire import framed
from worker.tools.avro_events import avro_encoder, event_schema, malformed_record
from worker.tools.synthetic import FEATURES, feature_rows

pytestmark = pytest.mark.integration


def send_avro(
    producer: KafkaProducer, settings: Settings, registry: SchemaRegistry, rows: np.ndarray
) -> list[bytes]:
    """Each row as a registry record `e-<i>`, under the topic's schema; the values sent."""
    _, encode = avro_encoder(registry, settings.input_topic, "ads")
    values = [
        encode(f"e-{i}", dict(zip(FEATURES, row, strict=True)))
        for i, row in enumerate(rows.tolist())
    ]
    for i, value in enumerate(values):
        producer.send(settings.input_topic, key=f"e-{i}".encode(), value=value)
    producer.flush()
    return values


def test_a_worker_scores_registry_records_as_json_events_and_names_each_broken_one(
    client_settings: Settings,
    schema_registry: RegistryServer,
    publish: Any,
    logistic: Any,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
) -> None:
    settings = client_settings.replace(input_format="avro", schema_registry_url=schema_registry.url)
    publish(logistic, "v1", activate=True)
    rows = feature_rows(60, seed=8)
    good = send_avro(producer, settings, schema_registry.client, rows)[0]
    schema_id = int.from_bytes(good[1:5], "big")
    for variant in range(4):
        producer.send(
            settings.input_topic,
            key=f"bad-{variant}".encode(),
            value=malformed_record(good, schema_id, variant),
        )
    producer.flush()
    worker_factory(settings)

    wait_until(
        lambda: len(reader.predictions) >= 60 and len(reader.dead_letters) >= 4,
        what="every record scored or dead-lettered",
    )
    expected = {f"e-{i}": p for i, p in enumerate(logistic.predict_proba(rows)[:, 1])}
    assert {p["event_id"] for p in reader.predictions} == set(expected)
    for prediction in reader.predictions:
        assert abs(prediction["score"] - expected[prediction["event_id"]]) <= 1e-9
    reasons = {r.key.decode(): dict(r.headers)["error"].decode() for r in reader.dead_letters}
    assert reasons == {
        "bad-0": "invalid_wire_format",
        "bad-1": "schema_mismatch",
        "bad-2": "unknown_schema",
        "bad-3": "schema_mismatch",
    }


class Gate:
    """A TCP forwarder on a free loopback port in front of `target`; shut, nothing listens
    there (a registry that cannot be reached); opened, it forwards again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._listener: socket.socket | None = None

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def shut(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the accept: close alone would not
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def gate(schema_registry: RegistryServer) -> Iterator[Gate]:
    port = int(schema_registry.url.split(":")[2].split("/")[0])
    gated = Gate(port)
    yield gated
    gated.shut()


def test_a_registry_out_of_reach_holds_the_batch_until_it_is_back(
    settings: Settings,
    schema_registry: RegistryServer,
    gate: Gate,
    publish: Any,
    logistic: Any,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
) -> None:
    url = schema_registry.url.replace(schema_registry.url.split("/")[2], f"127.0.0.1:{gate.port}")
    settings = settings.replace(
        input_format="avro", schema_registry_url=url, delivery_retry_max_s=1
    )
    publish(logistic, "v1", activate=True)
    send_avro(producer, settings, schema_registry.client, feature_rows(20, seed=9))
    worker = worker_factory(settings)  # the gate is shut: the registry cannot be reached

    wait_until(
        lambda: worker.worker.loop is not None and worker.worker.loop.schema_outage,
        what="the worker waiting for the registry",
    )
    readiness = worker.worker.readiness()
    assert not readiness.ready and "waiting for the schema registry" in readiness.reason
    metrics = worker.worker.metrics.registry
    wait_until(
        lambda: (metrics.get_sample_value("scorer_schema_registry_errors_total") or 0) >= 2,
        what="fetches retried",
    )
    assert reader.predictions == [] and reader.dead_letters == []
    gate.open()

    wait_until(lambda: len(reader.predictions) >= 20, what="the held batch scored")
    assert reader.dead_letters == [] and worker.worker.loop.schema_outage is None
    wait_until(lambda: worker.worker.readiness().ready, what="ready again")


def test_a_worker_stopped_while_the_registry_is_out_commits_what_it_scored_before(
    settings: Settings,
    schema_registry: RegistryServer,
    gate: Gate,
    publish: Any,
    logistic: Any,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
) -> None:
    """The batch in flight lands and is committed before the wait; the held batch stays
    uncommitted, and the next worker scores it: each event once."""
    url = schema_registry.url.replace(schema_registry.url.split("/")[2], f"127.0.0.1:{gate.port}")
    settings = settings.replace(
        input_format="avro", schema_registry_url=url, delivery_retry_max_s=1
    )
    publish(logistic, "v1", activate=True)
    gate.open()
    send_avro(producer, settings, schema_registry.client, feature_rows(10, seed=10))
    first = worker_factory(settings)
    wait_until(lambda: len(reader.predictions) >= 10, what="the first batch scored")
    gate.shut()
    held = held_records(producer, settings, schema_registry.client, feature_rows(10, seed=11))
    wait_until(lambda: first.worker.loop.schema_outage, what="the worker waiting")

    first.stop()

    partitions = {
        TopicPartition(settings.input_topic, p): 0
        for p in producer.partitions_for(settings.input_topic)
    }
    assert sum(offset or 0 for offset in committed(settings, partitions).values()) == 10
    gate.open()
    worker_factory(settings)
    wait_until(lambda: len(reader.predictions) >= 20, what="the held batch scored")
    ids = [p["event_id"] for p in reader.predictions]
    assert sorted(ids) == sorted([f"e-{i}" for i in range(10)] + held)
    assert reader.dead_letters == []


def held_records(
    producer: KafkaProducer, settings: Settings, registry: SchemaRegistry, rows: np.ndarray
) -> list[str]:
    """Records under a second schema (a new id the worker has not fetched): `h-<i>`."""
    schema = event_schema("ads") | {"name": "AdClickEventV2"}
    schema_id = registry.register(f"{settings.input_topic}-v2-value", orjson.dumps(schema).decode())
    parsed = parse_schema(schema)
    ids = []
    for i, row in enumerate(rows.tolist()):
        out = io.BytesIO()
        datum = {"event_id": f"h-{i}", "ts": 1.0, "features": dict(zip(FEATURES, row, strict=True))}
        schemaless_writer(out, parsed, datum)
        producer.send(
            settings.input_topic, key=f"h-{i}".encode(), value=framed(schema_id, out.getvalue())
        )
        ids.append(f"h-{i}")
    producer.flush()
    return ids
