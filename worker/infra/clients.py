"""Thin builders for the Kafka and Redis clients, and topic creation at start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import redis
import structlog
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from worker.errors import ConfigError, ServiceUnavailable
from worker.infra.retry import retry_until
from worker.settings import Settings, redact_url

log = structlog.get_logger(__name__)

_PRODUCER_HEADROOM_BYTES = 64 * 1024
T = TypeVar("T")


def client_options(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "bootstrap_timeout_ms": int(settings.startup_timeout_s * 1000),
        **security_options(settings),
    }


def security_options(settings: Settings) -> dict[str, Any]:
    """kafka-python's names for the connection's TLS and SASL settings."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL_"):
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password,
        }
    if protocol.endswith("SSL"):
        files = {
            "ssl_cafile": settings.kafka_ssl_cafile,
            "ssl_certfile": settings.kafka_ssl_certfile,
            "ssl_keyfile": settings.kafka_ssl_keyfile,
        }
        options |= {name: path for name, path in files.items() if path}
    return options


def _connect(factory: Callable[..., T], settings: Settings, **options: Any) -> T:
    """Build a client; kafka-python retries the bootstrap itself up to bootstrap_timeout_ms."""
    try:
        return factory(**client_options(settings), **options)
    except KafkaTimeoutError:
        raise ServiceUnavailable(
            f"cannot reach Kafka at {settings.kafka_bootstrap} after "
            f"{settings.startup_timeout_s:g}s"
        ) from None


def build_consumer(settings: Settings, **overrides: Any) -> KafkaConsumer:
    """The scoring consumer: manual commits, batches of up to batch_max_records."""
    options: dict[str, Any] = {
        "group_id": settings.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": settings.auto_offset_reset,
        "max_poll_records": settings.batch_max_records,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "max_poll_interval_ms": settings.max_poll_interval_ms,
        # exactly-once: never score what an upstream transaction may still abort
        "isolation_level": "read_committed"
        if settings.processing_guarantee == "exactly-once"
        else "read_uncommitted",
        **overrides,
    }
    return _connect(KafkaConsumer, settings, **options)


def group_options(settings: Settings) -> dict[str, Any]:
    """How the scoring consumer takes part in its group: static membership and the assignor.
    (`group_protocol=consumer` is refused for this client by the settings.)"""
    strategy = (
        (CooperativeStickyAssignor,)
        if settings.partition_assignment == "cooperative-sticky"
        else (RangePartitionAssignor, RoundRobinPartitionAssignor)  # kafka-python's default
    )
    return {
        "group_instance_id": settings.group_instance_id or None,
        "partition_assignment_strategy": strategy,
    }


def build_producer(settings: Settings, transactional_id: str | None = None) -> KafkaProducer:
    """acks=all with idempotence: a flush that returns without error means every record landed.
    With a transactional_id, a transactional producer (exactly-once); `init_transactions` is
    left to the caller."""
    transactions: dict[str, Any] = (
        {
            "transactional_id": transactional_id,
            "transaction_timeout_ms": settings.transaction_timeout_ms,
        }
        if transactional_id
        else {}
    )
    return _connect(
        KafkaProducer,
        settings,
        **transactions,
        acks="all",
        linger_ms=settings.linger_ms,
        max_request_size=settings.max_event_bytes + _PRODUCER_HEADROOM_BYTES,
        # send() blocks while a topic has no metadata: bound it like a flush.
        max_block_ms=int(settings.delivery_timeout_s * 1000),
        batch_size=settings.producer_batch_bytes,
    )


def ensure_topics(settings: Settings, *, labels: bool = False) -> None:
    """Create missing topics (the labels topic too for the monitor, which alone reads it); a
    broker that refuses creation is logged, not fatal."""
    admin = _connect(KafkaAdminClient, settings)
    try:
        existing = set(admin.list_topics())
        wanted = {
            settings.input_topic: settings.topic_partitions,
            settings.output_topic: settings.topic_partitions,
            settings.dlq_topic: settings.topic_partitions,
            settings.shadow_topic: settings.topic_partitions,
            settings.control_topic: 1,
        } | ({settings.labels_topic: settings.topic_partitions} if labels else {})
        missing = [
            NewTopic(name, partitions, settings.topic_replication)
            for name, partitions in wanted.items()
            if name not in existing
        ]
        if missing:
            _create(admin, missing)
    finally:
        admin.close()


def _create(admin: KafkaAdminClient, topics: list[NewTopic]) -> None:
    names = [topic.name for topic in topics]
    try:
        admin.create_topics(topics)
        log.info("topics.created", topics=names)
    except TopicAlreadyExistsError:
        pass  # another worker created them first
    except KafkaError as exc:
        log.warning("topics.create_failed", topics=names, error=str(exc))


def connect_redis(settings: Settings) -> redis.Redis:
    """A client that has answered PING, retried up to startup_timeout_s."""
    tls = {"ssl_ca_certs": settings.redis_ssl_ca_file} if settings.redis_ssl_ca_file else {}
    try:
        client = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=5,
            socket_connect_timeout=5,
            health_check_interval=30,
            **tls,
        )
    except ValueError as exc:
        raise ConfigError(f"setting redis_url is not a Redis URL: {exc}") from None
    where = f"Redis at {redact_url(settings.redis_url)}"

    def ping() -> None:
        try:
            client.ping()
        except (redis.AuthenticationError, redis.ResponseError) as exc:
            # Wrong or missing credentials: retrying cannot help.
            raise ConfigError(
                f"setting redis_url: {where} refused the credentials: {exc}"
            ) from None

    retry_until(
        ping, (redis.ConnectionError, redis.TimeoutError), settings.startup_timeout_s, where
    )
    return client


def topic_reader(
    settings: Settings, topics: list[str], from_end: bool = False, **options: Any
) -> KafkaConsumer:
    """A consumer outside any group holding every partition of `topics`, positioned at the
    beginning (or the end): for tools that read whole topics, not for scoring."""
    consumer = _connect(
        KafkaConsumer, settings, enable_auto_commit=False, fetch_max_wait_ms=100, **options
    )
    partitions = [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or {0})
    ]
    consumer.assign(partitions)
    if from_end:
        consumer.seek_to_end(*partitions)
        for partition in partitions:
            consumer.position(partition)  # resolve now, before anything is produced
    else:
        consumer.seek_to_beginning(*partitions)
    return consumer
