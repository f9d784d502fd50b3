"""The usage sums behind drift and the error-rate guard: adding, draining, and the newest
buckets holding enough rows."""

from __future__ import annotations

import threading

import numpy as np

from worker.models.usage import Usage, UsageTally, UsageWindow


def test_sums_add_and_bins_of_different_lengths_pad() -> None:
    """Counts read back from Redis end at their last non-zero bin."""
    total = Usage(10, 1, np.array([1, 2, 3]))
    total.add(Usage(5, 0, np.array([4])))
    total.add(Usage(1, 1, None))
    assert (total.rows, total.failed) == (16, 2)
    assert total.bins is not None and total.bins.tolist() == [5, 2, 3]
    short = Usage(0, 0, np.array([1]))
    short.add(Usage(0, 0, np.array([0, 0, 7])))
    assert short.bins is not None and short.bins.tolist() == [1, 0, 7]


def test_the_first_bins_added_are_copied_not_shared() -> None:
    batch = np.array([1, 1])
    total = Usage()
    total.add(Usage(2, 0, batch))
    total.add(Usage(2, 0, batch))
    assert batch.tolist() == [1, 1]


def test_a_tally_drains_what_every_thread_added_once() -> None:
    tally = UsageTally()

    def add() -> None:
        for _ in range(1000):
            tally.add({"v1": Usage(1, 0), "v2": Usage(2, 1)})

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sums = tally.drain()
    assert (sums["v1"].rows, sums["v2"].rows, sums["v2"].failed) == (4000, 8000, 4000)
    assert tally.drain() == {}


def test_newest_takes_buckets_until_it_holds_enough_rows() -> None:
    window = UsageWindow(buckets=[Usage(30, 3), Usage(50, 0), Usage(100, 50)])
    first = window.newest(20)
    assert (first.rows, first.failed) == (30, 3)
    two = window.newest(60)
    assert (two.rows, two.failed) == (80, 3)
    everything = window.newest(10_000)
    assert (everything.rows, everything.failed) == (180, 53)
