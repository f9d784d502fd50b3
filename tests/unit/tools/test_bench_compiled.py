"""The compiled bench's arithmetic and table: ratios per round, the publish-time costs."""

from worker.tools.bench import RunResult
from worker.tools.bench_compiled import CEILING, render, summarise


def runs(*rates: float, rss: float = 200.0) -> list[RunResult]:
    return [RunResult("x", rate, rss) for rate in rates]


def test_ratios_come_from_each_rounds_own_ceiling_and_costs_are_shown() -> None:
    forest_costs = {"joblib_us": 6.2, "onnx_us": 3.2, "max_difference": 4e-7}
    costs = {"forest": forest_costs | {"publish_chose": "onnx"}}
    result = summarise(
        {
            CEILING: runs(40_000, 20_000, 30_000),
            "forest, onnx": runs(32_000, 10_000, 24_000, rss=120),  # 0.8, 0.5, 0.8
        },
        costs,
    )

    forest = result["rows"]["forest, onnx"]
    assert forest["ratio_to_ceiling"] == 0.8 and forest["events_per_s"] == 24_000
    assert forest["runs"] == [32_000, 10_000, 24_000] and forest["peak_rss_mb"] == 120
    table = render(result)
    assert "forest, onnx" in table and "0.80" in table
    assert "6.200" in table and "3.200" in table and "onnx" in table and "4.0e-07" in table
