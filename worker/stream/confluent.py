"""The librdkafka transport (`kafka_client = "confluent"`, extra `scorer-worker[confluent]`).

Same contract as the kafka-python one: manual synchronous commits of explicit offsets,
rebalance callbacks run inside `poll_batch`, and a flush that reports every record the
broker did not acknowledge (delivery reports).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from worker.errors import ConfigError, ServiceUnavailable
from worker.settings import Settings
from worker.stream.transport import Headers, Partition, RebalanceCallbacks, Record, TransportError

_PRODUCER_HEADROOM_BYTES = 64 * 1024


def security_config(settings: Settings) -> dict[str, Any]:
    """librdkafka's names for the connection's TLS and SASL settings."""
    protocol = settings.kafka_security_protocol
    config: dict[str, Any] = {"security.protocol": protocol.lower()}
    if protocol.startswith("SASL_"):
        config |= {
            "sasl.mechanism": settings.kafka_sasl_mechanism,
            "sasl.username": settings.kafka_sasl_username,
            "sasl.password": settings.kafka_sasl_password,
        }
    files = {
        "ssl.ca.location": settings.kafka_ssl_cafile,
        "ssl.certificate.location": settings.kafka_ssl_certfile,
        "ssl.key.location": settings.kafka_ssl_keyfile,
    }
    if protocol.endswith("SSL"):
        config |= {name: path for name, path in files.items() if path}
    return config


def consumer_config(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": settings.auto_offset_reset,
        "max.poll.interval.ms": settings.max_poll_interval_ms,
        **group_config(settings),
        "fetch.wait.max.ms": settings.fetch_max_wait_ms,
        # librdkafka's default; named, as exactly-once depends on it
        "isolation.level": "read_committed",
        **security_config(settings),
    }


def group_config(settings: Settings) -> dict[str, Any]:
    """Membership: static (group.instance.id) or not, and the protocol. Under KIP-848's
    consumer protocol the broker owns the session timing and the assignment, and librdkafka
    refuses the classic protocol's settings for them."""
    config: dict[str, Any] = {"group.protocol": settings.group_protocol}
    if settings.group_instance_id:
        config["group.instance.id"] = settings.group_instance_id
    if settings.group_protocol == "classic":
        config |= {
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": settings.heartbeat_interval_ms,
            "partition.assignment.strategy": "cooperative-sticky"
            if settings.partition_assignment == "cooperative-sticky"
            else "range,roundrobin",  # librdkafka's default
        }
    return config


def producer_config(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": settings.linger_ms,
        "batch.size": settings.producer_batch_bytes,
        # librdkafka's own default (consistent_random, CRC32) would send a key's predictions
        # to another partition than kafka-python and Java producers do
        "partitioner": "murmur2_random",
        "message.max.bytes": settings.max_event_bytes + _PRODUCER_HEADROOM_BYTES,
        "message.timeout.ms": int(settings.delivery_timeout_s * 1000),
        **security_config(settings),
    }


class ConfluentConsumer:
    def __init__(self, settings: Settings) -> None:
        self._on_commit_failure: Callable[[str], None] = lambda error: None
        try:
            self._consumer = Consumer(consumer_config(settings) | {"on_commit": self._committed})
        except KafkaException as exc:
            raise ConfigError(f"setting kafka_client=confluent: {exc}") from None

    def subscribe(self, topics: Sequence[str], callbacks: RebalanceCallbacks) -> None:
        def assigned(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            callbacks.on_partitions_assigned(_pairs(partitions))

        def revoked(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            callbacks.on_partitions_revoked(_pairs(partitions))

        def lost(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            callbacks.on_partitions_lost(_pairs(partitions))

        # After each callback the client itself applies the change (assign, or the incremental
        # variant under cooperative-sticky and the consumer protocol).
        self._consumer.subscribe(list(topics), on_assign=assigned, on_revoke=revoked, on_lost=lost)

    def assignment_size(self) -> int:
        return len(self._consumer.assignment())

    def poll_batch(self, timeout_ms: int, max_records: int) -> Sequence[Any]:
        try:
            messages = self._consumer.consume(max_records, timeout_ms / 1000)
        except KafkaException as exc:
            raise TransportError(str(exc)) from exc
        records = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise TransportError(str(error))
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None and partition is not None and offset is not None
            _, timestamp = message.timestamp()
            records.append(
                Record(topic, partition, offset, message.key(), message.value(), timestamp)
            )
        return records

    def commit(self, next_offsets: dict[Partition, int], timeout_s: float) -> None:
        """librdkafka bounds a synchronous commit by its own request timeouts."""
        try:
            self._consumer.commit(offsets=_confluent_offsets(next_offsets), asynchronous=False)
        except KafkaException as exc:
            raise TransportError(str(exc)) from exc

    def commit_async(
        self, next_offsets: dict[Partition, int], on_failure: Callable[[str], None]
    ) -> None:
        self._on_commit_failure = on_failure
        try:
            self._consumer.commit(offsets=_confluent_offsets(next_offsets), asynchronous=True)
        except KafkaException as exc:
            on_failure(str(exc))

    def _committed(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's on_commit, served inside consume(): the loop's thread."""
        failed = [str(p.error) for p in partitions if p.error is not None]
        if error is not None or failed:
            self._on_commit_failure(str(error) if error is not None else failed[0])

    def highwater(self, partition: Partition) -> int | None:
        _, high = self._consumer.get_watermark_offsets(TopicPartition(*partition), cached=True)
        return int(high) if high >= 0 else None

    def pause_all(self) -> int:
        assigned = self._consumer.assignment()
        self._consumer.pause(assigned)
        return len(assigned)

    def resume_all(self) -> None:
        self._consumer.resume(self._consumer.assignment())

    def group_metadata(self) -> object:
        return self._consumer.consumer_group_metadata()

    def rewind(self, first_offsets: dict[Partition, int]) -> None:
        assigned = set(_pairs(self._consumer.assignment()))
        try:
            for (topic, partition), offset in first_offsets.items():
                if (topic, partition) in assigned:
                    self._consumer.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:
            raise TransportError(f"seek: {exc}") from exc

    def close(self) -> None:
        self._consumer.close()


def _confluent_offsets(next_offsets: dict[Partition, int]) -> list[TopicPartition]:
    return [
        TopicPartition(topic, partition, offset)
        for (topic, partition), offset in next_offsets.items()
    ]


class ConfluentProducer:
    def __init__(self, settings: Settings, transactional_id: str | None = None) -> None:
        """With a transactional id, a transactional producer, its transactions initialised
        (which aborts what a previous producer with that id left open, and fences it)."""
        config = producer_config(settings)
        if transactional_id:
            config |= {
                "transactional.id": transactional_id,
                "transaction.timeout.ms": settings.transaction_timeout_ms,
            }
        try:
            self._producer = Producer(config)
        except KafkaException as exc:
            raise ConfigError(f"setting kafka_client=confluent: {exc}") from None
        self._failures: list[str] = []
        if transactional_id:
            try:
                self._producer.init_transactions(settings.startup_timeout_s)
            except KafkaException as exc:
                raise ServiceUnavailable(f"cannot start Kafka transactions: {exc}") from None

    def _report(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self._failures.append(str(error))

    def send(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Headers | None = None
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=self._report
                )
                return
            except BufferError:  # local queue full: serve delivery reports, then retry
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise TransportError(str(exc)) from exc

    def send_many(
        self, topic: str, values: Sequence[bytes | None], keys: Sequence[bytes | None]
    ) -> None:
        """librdkafka hashes keys in C (murmur2_random): nothing to gain from batching that."""
        for value, key in zip(values, keys, strict=True):
            self.send(topic, value, key)

    def flush(self, timeout_s: float) -> list[str]:
        left = self._producer.flush(timeout_s)
        failures, self._failures = self._failures, []
        if left:
            failures.append(f"{left} records still unacknowledged after {timeout_s:g}s")
        return failures

    def begin_transaction(self) -> None:
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            raise TransportError(f"begin transaction: {exc}") from exc

    def commit_transaction(
        self, next_offsets: dict[Partition, int], group_metadata: object, timeout_s: float
    ) -> None:
        failures = self.flush(timeout_s)
        if failures:
            raise TransportError(f"{len(failures)} records not acknowledged: {failures[0]}")
        try:
            self._producer.send_offsets_to_transaction(
                _confluent_offsets(next_offsets), group_metadata, timeout_s
            )
            self._producer.commit_transaction(timeout_s)
        except KafkaException as exc:
            raise TransportError(f"commit transaction: {exc}") from exc

    def close(self) -> None:
        """Drop what is still queued: called after a delivered batch, or to replace a failed
        producer, whose batch is then sent again by a fresh one."""
        self._producer.purge()
        self._producer.flush(0)


def _pairs(partitions: list[TopicPartition]) -> list[Partition]:
    return [(p.topic, p.partition) for p in partitions]
