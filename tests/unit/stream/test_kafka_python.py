"""The kafka-python transport's failure paths, with stand-ins for the client objects (the
happy paths run against a real broker in tests/integration)."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import IllegalStateError, KafkaTimeoutError, NotCoordinatorError

from worker.stream.kafka_python import KafkaPythonConsumer, KafkaPythonProducer
from worker.stream.transport import TransportError


class CommitCalledBack:
    """commit_async that answers through its callback, as kafka-python does."""

    def __init__(self, outcome: object) -> None:
        self._outcome = outcome

    def commit_async(self, offsets: Any, callback: Any) -> None:
        if isinstance(self._outcome, type) and issubclass(self._outcome, Exception):
            raise self._outcome("no coordinator yet")
        callback(offsets, self._outcome)


@pytest.mark.parametrize(
    ("outcome", "reported"),
    [
        (object(), []),  # an OffsetCommitResponse: nothing to report
        (
            NotCoordinatorError("moved"),
            ["NotCoordinatorError: [Error 16] NotCoordinatorError: moved"],
        ),
        (
            NotCoordinatorError,
            ["NotCoordinatorError: [Error 16] NotCoordinatorError: no coordinator yet"],
        ),
    ],
)
def test_a_commit_not_waited_for_reports_its_failure_whether_late_or_at_once(
    outcome: object, reported: list[str]
) -> None:
    failures: list[str] = []
    consumer = KafkaPythonConsumer(CommitCalledBack(outcome))
    consumer.commit_async({("in", 0): 5}, failures.append)
    assert failures == reported


class NoMetadata:
    def send(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("nothing is sent without the partition count")

    def partitions_for(self, topic: str) -> set[int]:
        raise KafkaTimeoutError("no metadata for the topic within max_block_ms")


def test_a_batch_without_partition_metadata_is_a_transport_error() -> None:
    producer = KafkaPythonProducer(NoMetadata())
    with pytest.raises(TransportError, match="KafkaTimeoutError"):
        producer.send_many("out", [b"v"], [b"k"])


class RevokedBeforeTheListener:
    """kafka-python under cooperative-sticky: revoked partitions leave the assignment before
    the listener runs, and asking for their high watermark raises."""

    def highwater(self, partition: Any) -> int:
        raise IllegalStateError("Partition is not assigned")


def test_the_high_watermark_of_a_partition_no_longer_assigned_is_unknown() -> None:
    assert KafkaPythonConsumer(RevokedBeforeTheListener()).highwater(("in", 6)) is None
