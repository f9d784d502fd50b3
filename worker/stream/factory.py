"""The one place that chooses the scoring loop's Kafka client from `kafka_client`."""

from __future__ import annotations

from worker.infra.clients import build_consumer, build_producer, group_options
from worker.settings import Settings
from worker.stream.kafka_python import KafkaPythonConsumer, KafkaPythonProducer, transactional
from worker.stream.transport import NoRebalanceWork, ScoringConsumer, ScoringProducer


def scoring_consumer(settings: Settings) -> ScoringConsumer:
    if settings.kafka_client == "confluent":
        from worker.stream.confluent import ConfluentConsumer

        return ConfluentConsumer(settings)
    return KafkaPythonConsumer(build_consumer(settings, **group_options(settings)))


def joining_consumer(settings: Settings, group_id: str, topics: list[str]) -> ScoringConsumer:
    """A monitor's or a retrainer's: its own group on these topics, committed records only
    (an exactly-once worker's aborted batch is scored again, and only its committed records
    may be joined), nothing to do at a rebalance (what was not committed is read again)."""
    if settings.kafka_client == "confluent":
        from worker.stream.confluent import ConfluentConsumer

        consumer: ScoringConsumer = ConfluentConsumer(settings.replace(group_id=group_id))
    else:
        raw = build_consumer(settings, group_id=group_id, isolation_level="read_committed")
        consumer = KafkaPythonConsumer(raw)
    consumer.subscribe(topics, NoRebalanceWork())
    return consumer


def scoring_producer(settings: Settings, transactional_id: str | None = None) -> ScoringProducer:
    """With a transactional id, a producer whose transactions have been initialised."""
    if settings.kafka_client == "confluent":
        from worker.stream.confluent import ConfluentProducer

        return ConfluentProducer(settings, transactional_id)
    producer = build_producer(settings, transactional_id)
    return transactional(producer) if transactional_id else KafkaPythonProducer(producer)
