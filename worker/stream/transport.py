"""The scoring loop's view of Kafka: one small interface, implemented by two clients.

`kafka_python.py` (the default, the project's chosen client) and `confluent.py` (librdkafka
through confluent-kafka, an optional extra) give the loop the same semantics: batches of
records, commits of explicit offsets (waited for, or not), rebalance callbacks, and a producer
whose `flush` reports every record that was not acknowledged. `factory.py` picks one from
`kafka_client`; this module imports neither.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

Partition = tuple[str, int]  # (topic, partition); kafka-python's TopicPartition is one too
Headers = list[tuple[str, str | bytes | None]]


class TransportError(Exception):
    """A Kafka operation failed (either client); the loop treats it as transient."""


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0  # milliseconds, the producer's or the broker's (as kafka-python's)


class RebalanceCallbacks(Protocol):
    """Called while the loop's thread is inside `poll_batch` or `close`, so never beside the
    loop's own work; a revoke may block (it lands the batch in flight and waits for a commit).
    librdkafka runs them on the loop's thread; kafka-python 3 on its IO thread, where the
    transport hands a revoke to a thread of its own, as a blocking call there would stall the
    client (kafka_python.py)."""

    def on_partitions_revoked(self, revoked: Sequence[Partition]) -> None:
        """The partitions go to another member: this one may still commit their offsets."""
        ...

    def on_partitions_lost(self, lost: Sequence[Partition]) -> None:
        """The group moved on without this member (evicted): their offsets can no longer be
        committed by it."""
        ...

    def on_partitions_assigned(self, assigned: Sequence[Partition]) -> None: ...


class NoRebalanceWork:
    """Callbacks for a consumer with nothing to do at a rebalance: what it did not commit is
    read again by the partition's next owner."""

    def on_partitions_revoked(self, revoked: Sequence[Partition]) -> None:
        pass

    def on_partitions_lost(self, lost: Sequence[Partition]) -> None:
        pass

    def on_partitions_assigned(self, assigned: Sequence[Partition]) -> None:
        pass


class ScoringConsumer(Protocol):
    def subscribe(self, topics: Sequence[str], callbacks: RebalanceCallbacks) -> None: ...

    def assignment_size(self) -> int:
        """How many partitions this member holds now."""
        ...

    def poll_batch(self, timeout_ms: int, max_records: int) -> Sequence[Any]:
        """Records with .topic .partition .offset .key .value, in offset order per partition."""
        ...

    def commit(self, next_offsets: dict[Partition, int], timeout_s: float) -> None:
        """Commit and wait, at most `timeout_s` (the broker may be gone at a stop)."""
        ...

    def commit_async(
        self, next_offsets: dict[Partition, int], on_failure: Callable[[str], None]
    ) -> None:
        """Send a commit without waiting for it; a failure reaches `on_failure` later, from
        inside a poll or a commit of this consumer (the loop's own thread)."""
        ...

    def highwater(self, partition: Partition) -> int | None: ...

    def pause_all(self) -> int:
        """Stop fetching from every assigned partition (polls go on returning nothing, and
        keep the membership alive); how many are paused."""
        ...

    def resume_all(self) -> None: ...

    def group_metadata(self) -> object:
        """The group's generation and member id (KIP-447): what fences a transaction's
        offsets, so a worker the group has moved on from cannot commit them."""
        ...

    def rewind(self, first_offsets: dict[Partition, int]) -> None:
        """Read again from these offsets, on the partitions still assigned (exactly-once, after
        an aborted transaction); the others went to their next owner in a rebalance."""
        ...

    def close(self) -> None: ...


class ScoringProducer(Protocol):
    def send(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Headers | None = None
    ) -> None: ...
    def send_many(
        self, topic: str, values: Sequence[bytes | None], keys: Sequence[bytes | None]
    ) -> None:
        """`send` for each (value, key), with the batch's partitions worked out at once."""
        ...

    def flush(self, timeout_s: float) -> list[str]:
        """Wait for every record sent since the last flush; describe each one that failed."""
        ...

    # Exactly-once, on a producer built with a transactional id (factory.py):
    def begin_transaction(self) -> None: ...

    def commit_transaction(
        self, next_offsets: dict[Partition, int], group_metadata: object, timeout_s: float
    ) -> None:
        """Wait for every record of the transaction (at most `timeout_s`), add the input
        offsets to it, fenced by the group's metadata, and commit; TransportError otherwise
        (the transaction is then left open: replacing the producer aborts it)."""
        ...

    def close(self) -> None: ...


def offsets_after(records: Sequence[Any]) -> dict[Partition, int]:
    """Per partition, the offset after the batch's last record (records are in offset order
    per partition, so the last one wins): what a commit of the batch names."""
    return {(r.topic, r.partition): r.offset + 1 for r in records}


def offsets_from(records: Sequence[Any]) -> dict[Partition, int]:
    """Per partition, the batch's first offset: where to read it again."""
    first: dict[Partition, int] = {}
    for r in records:
        first.setdefault((r.topic, r.partition), r.offset)
    return first
