"""The batch partitioner agrees with kafka-python's own (Java's murmur2) on every key."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2

from worker.stream.partitioning import key_partitions


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=40), max_size=30),
    st.integers(1, 64),
)
def test_each_key_gets_the_partition_java_would_give_it(keys: list[bytes], count: int) -> None:
    expected = [(murmur2(key) & 0x7FFFFFFF) % count for key in keys]
    assert key_partitions(keys, range(count)) == expected


def test_event_id_keys_of_mixed_lengths() -> None:
    keys = [f"e-{i}".encode() for i in range(2000)]
    expected = [(murmur2(key) & 0x7FFFFFFF) % 12 for key in keys]
    assert key_partitions(keys, {11, 3, 0, 1, 2, 4, 5, 6, 7, 8, 9, 10}) == expected
