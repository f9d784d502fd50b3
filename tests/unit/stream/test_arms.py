"""The canary arm is the documented hash of the key: recomputable with any CRC-32."""

from __future__ import annotations

import binascii

from hypothesis import given
from hypothesis import strategies as st

from worker.stream.arms import arm_buckets


@given(st.lists(st.binary(max_size=40), max_size=50))
def test_the_bucket_is_crc32_of_the_prefixed_key_modulo_10000(keys: list[bytes]) -> None:
    # binascii's CRC-32, not zlib's: the same standard from a second implementation
    documented = [binascii.crc32(b"scorer-arm:" + key) % 10000 for key in keys]
    assert arm_buckets(keys, ["unused"] * len(keys)).tolist() == documented


def test_a_record_without_a_key_is_bucketed_by_its_event_id_as_text() -> None:
    by_id = arm_buckets([None, None, b"user-7"], ["e-1", 42, "e-3"]).tolist()
    assert by_id == arm_buckets([b"e-1", b"42", b"user-7"], ["", "", ""]).tolist()


def test_buckets_spread_evenly() -> None:
    keys = [f"user-{i}".encode() for i in range(20_000)]
    buckets = arm_buckets(keys, [""] * len(keys))
    for percent in (1, 10, 50):
        assert abs(float((buckets < percent * 100).mean()) - percent / 100) < 0.01
