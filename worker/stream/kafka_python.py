"""The kafka-python transport (`kafka_client = "kafka-python"`, the default)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import IllegalStateError, KafkaError
from kafka.future import Future
from kafka.structs import OffsetAndMetadata

from worker.errors import ServiceUnavailable
from worker.stream.partitioning import key_partitions
from worker.stream.transport import Headers, Partition, RebalanceCallbacks, TransportError


class _Listener(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """kafka-python 3 calls rebalance listeners on its IO thread, the one that serves every
    request of the consumer. A blocking call there is refused (a waited commit: "Cannot block
    on net.run() from the IO thread itself") or stalls the heartbeats (a producer flush). So a
    revocation, which lands the batch in flight and waits for its commit, runs on a thread of
    its own, and the listener awaits it while the IO thread goes on serving that commit and
    the heartbeats.

    Waking the IO thread from another one takes its event loop's `call_soon_threadsafe`: the
    one use of kafka-python internals here (`KafkaConsumer._net`), pinned by the version range
    in pyproject.toml and exercised by tests/integration/stream/test_group_changes.py.
    """

    def __init__(self, callbacks: RebalanceCallbacks, net: Any) -> None:
        self._callbacks = callbacks
        self._net = net

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self._off_io_thread(self._callbacks.on_partitions_revoked, revoked)

    async def on_partitions_lost(self, lost: Collection[TopicPartition]) -> None:
        await self._off_io_thread(self._callbacks.on_partitions_lost, lost)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        self._callbacks.on_partitions_assigned(sorted(assigned))

    async def _off_io_thread(
        self,
        callback: Callable[[Sequence[Partition]], None],
        partitions: Collection[TopicPartition],
    ) -> None:
        done = Future()

        def run() -> None:
            try:
                callback(sorted(partitions))
            finally:
                self._net.call_soon_threadsafe(lambda: done.success(None))

        threading.Thread(target=run, name="kafka-rebalance", daemon=True).start()
        await done


class KafkaPythonConsumer:
    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer

    def subscribe(self, topics: Sequence[str], callbacks: RebalanceCallbacks) -> None:
        listener = _Listener(callbacks, self._consumer._net)
        self._consumer.subscribe(list(topics), listener=listener)

    def assignment_size(self) -> int:
        return len(self._consumer.assignment())

    def poll_batch(self, timeout_ms: int, max_records: int) -> Sequence[Any]:
        try:
            batches = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            raise TransportError(str(exc)) from exc
        return [record for records in batches.values() for record in records]

    def commit(self, next_offsets: dict[Partition, int], timeout_s: float) -> None:
        try:
            self._consumer.commit(_kafka_offsets(next_offsets), timeout_ms=int(timeout_s * 1000))
        except KafkaError as exc:
            raise TransportError(str(exc)) from exc

    def commit_async(
        self, next_offsets: dict[Partition, int], on_failure: Callable[[str], None]
    ) -> None:
        def done(offsets: object, result: object) -> None:
            if isinstance(result, Exception):
                on_failure(f"{type(result).__name__}: {result}")

        try:
            self._consumer.commit_async(_kafka_offsets(next_offsets), callback=done)
        except KafkaError as exc:
            on_failure(f"{type(exc).__name__}: {exc}")

    def highwater(self, partition: Partition) -> int | None:
        """None for a partition no longer assigned: under cooperative-sticky, kafka-python
        drops revoked partitions from the assignment before it calls the listener."""
        try:
            value = self._consumer.highwater(TopicPartition(*partition))
        except IllegalStateError:
            return None
        return int(value) if value is not None else None

    def pause_all(self) -> int:
        assigned = self._consumer.assignment()
        self._consumer.pause(*assigned)
        return len(assigned)

    def resume_all(self) -> None:
        self._consumer.resume(*self._consumer.paused())

    def group_metadata(self) -> object:
        return self._consumer.group_metadata()

    def rewind(self, first_offsets: dict[Partition, int]) -> None:
        assigned = self._consumer.assignment()
        for partition, offset in first_offsets.items():
            if TopicPartition(*partition) in assigned:
                self._consumer.seek(TopicPartition(*partition), offset)

    def close(self) -> None:
        self._consumer.close(autocommit=False)


def _kafka_offsets(next_offsets: dict[Partition, int]) -> dict[TopicPartition, OffsetAndMetadata]:
    return {
        TopicPartition(*tp): OffsetAndMetadata(offset, "", -1)
        for tp, offset in next_offsets.items()
    }


class KafkaPythonProducer:
    def __init__(self, producer: KafkaProducer) -> None:
        self._producer = producer
        self._futures: list[Any] = []

    def send(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Headers | None = None
    ) -> None:
        try:
            self._futures.append(self._producer.send(topic, value=value, key=key, headers=headers))
        except KafkaError as exc:  # e.g. no metadata for the topic within max_block_ms
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc

    def send_many(
        self, topic: str, values: Sequence[bytes | None], keys: Sequence[bytes | None]
    ) -> None:
        """The default partitioner's choice for every key, computed for the batch at once
        (partitioning.py), then passed to each send. Records without a key, which the
        client spreads at random, keep its per-record choice."""
        if None in keys:
            for value, key in zip(values, keys, strict=True):
                self.send(topic, value, key)
            return
        send, futures = self._producer.send, self._futures
        try:
            partitions = key_partitions(keys, self._producer.partitions_for(topic))  # type: ignore[arg-type]  # no None
            for value, key, partition in zip(values, keys, partitions, strict=True):
                futures.append(send(topic, value=value, key=key, partition=partition))
        except KafkaError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc

    def flush(self, timeout_s: float) -> list[str]:
        futures, self._futures = self._futures, []
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            return [f"flush did not complete: {type(exc).__name__}: {exc}"]
        return [str(f.exception) for f in futures if not f.succeeded()]

    def begin_transaction(self) -> None:
        try:
            self._producer.begin_transaction()
        except KafkaError as exc:
            raise TransportError(f"begin transaction: {type(exc).__name__}: {exc}") from exc

    def commit_transaction(
        self, next_offsets: dict[Partition, int], group_metadata: object, timeout_s: float
    ) -> None:
        """The records are flushed first, with the flush's bound: kafka-python waits for the
        offsets and the commit themselves without one (they go to the transaction
        coordinator, and return when it answers or the producer fails)."""
        failures = self.flush(timeout_s)
        if failures:
            raise TransportError(f"{len(failures)} records not acknowledged: {failures[0]}")
        try:
            self._producer.send_offsets_to_transaction(_kafka_offsets(next_offsets), group_metadata)
            self._producer.commit_transaction()
        except KafkaError as exc:
            raise TransportError(f"commit transaction: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Drop what is still buffered: called after a delivered batch, or to replace a failed
        producer, whose batch is then sent again by a fresh one."""
        self._producer.close(timeout=0)


def transactional(producer: KafkaProducer) -> KafkaPythonProducer:
    """Register the transactional id with its coordinator, which aborts any transaction a
    previous producer with that id left open and fences that producer out."""
    try:
        producer.init_transactions()
    except KafkaError as exc:
        producer.close(timeout=0)
        raise ServiceUnavailable(
            f"cannot start Kafka transactions: {type(exc).__name__}: {exc}"
        ) from None
    return KafkaPythonProducer(producer)
