"""The rebalance bench's summary over rounds: timings are medians, repeats are summed."""

from worker.tools.bench_rebalance import _combine, render_rebalance


def _run(gap: float, twice: int, missing: int = 0) -> dict[str, float | int]:
    return {"longest_gap_s": gap, "scored_twice": twice, "missing": missing, "join_settle_s": gap}


def test_timings_are_the_median_of_the_rounds_and_counts_their_sum() -> None:
    runs = [_run(0.1, 0), _run(5.0, 2, missing=7), _run(0.2, 1)]

    combined = _combine(runs)

    assert combined["longest_gap_s"] == 0.2  # one slow round does not make the figure
    assert combined["join_settle_s"] == 0.2
    assert combined["scored_twice"] == 3  # a duplicate in any round shows
    assert combined["missing"] == 7
    assert combined["rounds"] == runs


def test_the_table_has_one_line_per_scenario_under_its_header() -> None:
    row = _combine([_run(0.1, 0)]) | {
        "longest_partition_stall_s": 1.0,
        "leave_settle_s": 1.0,
        "restart_settle_s": 3.0,
        "restart_revocations": 0,
    }

    lines = render_rebalance({"confluent, eager": row}).splitlines()

    assert lines[0].split() == [
        "gap", "s", "stall", "s", "twice", "missing", "join", "s", "leave", "s", "restart", "s",
        "revoked",
    ]  # fmt: skip
    assert lines[1].split()[:3] == ["confluent,", "eager", "0.1"]
