"""The monitor bench's arithmetic: medians over rounds, ratios from each round's own pair."""

from worker.tools.bench_monitor import ALL_LABELS, HALF_LABELS, WORKER, render, summarise


def run(rate: float, rss: float = 150.0, join_bytes: float = 300.0) -> dict[str, float]:
    return {
        "labelled_events_per_s": rate,
        "records_per_s": 2 * rate,
        "peak_rss_mb": rss,
        "join_bytes_per_event": join_bytes,
    }


def test_ratios_come_from_each_rounds_own_worker_run() -> None:
    worker = [20_000.0, 10_000.0, 16_000.0]
    runs = {
        ALL_LABELS: [run(22_000), run(12_000), run(8_000)],  # ratios 1.1, 1.2, 0.5
        HALF_LABELS: [run(10_000, rss=160), run(5_000, rss=140), run(8_000, join_bytes=400)],
    }

    result = summarise(worker, runs)

    rows = result["rows"]
    assert rows[WORKER]["events_per_s"] == 16_000
    monitor = rows[f"monitor, {ALL_LABELS}"]
    # the median of the ratios (1.1), not the ratio of the medians (12,000 / 16,000)
    assert monitor["ratio_to_worker"] == 1.1
    assert monitor["labelled_events_per_s"] == 12_000
    assert monitor["records_per_s"] == 24_000
    assert monitor["runs"] == [22_000, 12_000, 8_000]
    half = rows[f"monitor, {HALF_LABELS}"]
    assert half["ratio_to_worker"] == 0.5
    assert half["peak_rss_mb"] == 150.0
    assert half["join_bytes_per_event"] == 300
    assert result["worker_runs"] == [20_000, 10_000, 16_000]


def test_the_table_names_every_row_with_its_ratio() -> None:
    table = render(summarise([20_000.0], {ALL_LABELS: [run(25_000)], HALF_LABELS: [run(9_000)]}))

    assert "worker, logistic" in table
    assert f"monitor, {ALL_LABELS}" in table and "1.25" in table
