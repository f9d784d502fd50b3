"""The batch histogram exposes exactly what prometheus_client's own Histogram would."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from worker.ops.metrics import BatchHistogram

BUCKETS = (0.005, 0.01, 0.1, 1, 2.5)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(
            st.floats(-10, 100, allow_nan=False) | st.sampled_from(BUCKETS),
            max_size=20,
        ),
        max_size=5,
    )
)
def test_batch_histogram_scrapes_like_one_observe_per_value(batches: list[list[float]]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch_histogram = BatchHistogram("latency_seconds", "help", BUCKETS)
    ours.register(batch_histogram)
    histogram = Histogram("latency_seconds", "help", buckets=BUCKETS, registry=theirs)
    for values in batches:
        batch_histogram.observe_all(np.array(values, dtype=np.float64))
        for value in values:
            histogram.observe(value)
    assert _counts(generate_latest(ours)) == _counts(generate_latest(theirs))
    assert math.isclose(_sum(generate_latest(ours)), _sum(generate_latest(theirs)), abs_tol=1e-9)


def _counts(scrape: bytes) -> list[str]:
    return [line for line in scrape.decode().splitlines() if "_bucket" in line or "_count" in line]


def _sum(scrape: bytes) -> float:
    line = next(
        line for line in scrape.decode().splitlines() if line.startswith("latency_seconds_sum")
    )
    return float(line.split()[-1])
