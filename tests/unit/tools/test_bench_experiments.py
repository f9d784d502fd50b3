"""The experiments bench's arithmetic: ratios per round, the shadow's cost from two rates."""

import pytest

from worker.tools.bench_experiments import (
    ALONE,
    CEILING,
    WITH_CANARY,
    WITH_PROFILE,
    WITH_SHADOW,
    summarise,
)


def test_costs_come_from_each_rounds_own_pair_of_runs() -> None:
    rates = {
        CEILING: [50_000.0, 60_000.0, 40_000.0],
        ALONE: [20_000.0, 40_000.0, 25_000.0],
        WITH_CANARY: [19_000.0, 40_000.0, 25_000.0],  # ratios 0.95, 1.0, 1.0
        WITH_SHADOW: [10_000.0, 20_000.0, 12_500.0],
    }
    scoring = {ALONE: 4.0, WITH_CANARY: 4.5, WITH_SHADOW: 5.25, WITH_PROFILE: 4.4}

    result = summarise(rates, scoring)

    assert result["rows"][WITH_CANARY]["ratio_to_primary_alone"] == 1.0
    assert result["canary_cost"] == 0.0
    # per round 1/10,000 - 1/19,000 s = 47.4 µs, 1/20,000 - 1/40,000 = 25, 1/12,500 - 1/25,000 = 40
    assert result["shadow_cost_us_per_event"] == pytest.approx(40.0)
    assert result["canary_scoring_us_per_event"] == 0.5
    assert result["canary_scoring_share_of_event_time"] == pytest.approx(0.5 / 40, abs=1e-3)
    assert result["shadow_scoring_us_per_event"] == 0.75
    assert result["drift_scoring_us_per_event"] == 0.4
    assert result["drift_scoring_share_of_event_time"] == pytest.approx(0.4 / 40, abs=1e-3)
