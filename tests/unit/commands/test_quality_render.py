"""`scorer quality`'s text: one table per version and arm, the canary's verdict with its test."""

from __future__ import annotations

from typing import Any

from worker.commands.quality import render_quality

FIGURES = {
    "labelled": 812,
    "auc": 0.7312,
    "auc_low": 0.7011,
    "auc_high": 0.7613,
    "logloss": 0.3521,
    "brier": 0.1012,
    "calibration": 1.04,
    "accuracy": 0.871,
    "precision": 0.52,
    "recall": 0.31,
}


def report(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "active_version": "v1",
        "settings": {"quality_window": 10000, "decision_threshold": 0.5},
        "joins": {"pending": 7, "joined": 1200, "unlabelled": 3, "unmatched_labels": 1},
        "versions": {
            "v1": {
                "role": "primary",
                "kind": "classifier",
                "arms": {"primary": FIGURES},
                "errors": {"rows": 2000, "failed": 3, "error_rate": 0.0015},
                "drift": {
                    "reference": True,
                    "rows": 9000,
                    "score_psi": 0.012,
                    "max_psi": 0.31,
                    "features": {"f3": 0.31, "f0": 0.02, "f1": 0.01, "f2": 0.0},
                },
            },
            "r1": {
                "role": "shadow",
                "kind": "regressor",
                "arms": {"shadow": {"labelled": 5, "mae": 0.25, "rmse": None}},
                "errors": {"rows": 0, "failed": 0, "error_rate": None},
                "drift": {"reference": False, "note": "no reference profile: publish ..."},
            },
        },
        "comparison": None,
    }
    return base | changes


def test_each_version_gets_a_table_of_its_kind() -> None:
    text = render_quality(report())
    assert "v1  (primary, classifier)" in text and "r1  (shadow, regressor)" in text
    assert "0.7312" in text and "AUC 95 % 0.7011..0.7613" in text
    assert "0.2500" in text and "MAE" in text
    assert "1200 labelled, 7 waiting, dropped 3 unlabelled and 1 unmatched labels" in text


def test_errors_and_drift_are_shown_and_no_reference_says_so() -> None:
    text = render_quality(report())
    assert "3 of its newest 2000 rows failed (0.15%)" in text
    assert "PSI over 9000 rows: score 0.012; top features f3 0.310, f0 0.020, f1 0.010" in text
    assert "drift     no reference profile: publish ..." in text
    assert "errors    no rows scored in the drift window" in text


def test_a_missing_figure_is_a_dash_not_an_error() -> None:
    line = next(row for row in render_quality(report()).splitlines() if row.startswith("  shadow"))
    assert line.split()[-1] == "-"


def test_the_canary_line_names_the_verdict_and_its_test() -> None:
    comparison = {
        "canary": "v2",
        "primary": "v1",
        "canary_labelled": 300,
        "primary_labelled": 1200,
        "difference": -0.21,
        "low": -0.26,
        "high": -0.16,
        "verdict": "worse",
        "test": "DeLong AUC difference, unpaired, 95 % interval",
    }
    text = render_quality(report(comparison=comparison))
    assert "canary v2 vs primary v1" in text and "(300 vs 1200 labelled)" in text
    assert "-0.2100 (95 % -0.2600..-0.1600): WORSE [DeLong" in text


def test_no_windows_says_where_they_come_from() -> None:
    assert "is `scorer monitor` running?" in render_quality(report(versions={}))


def test_a_comparison_without_an_interval_yet_is_said_so() -> None:
    """Early in a canary one side may hold fewer than two of a class: a difference, no
    interval."""
    comparison = {
        "canary": "v2",
        "primary": "v1",
        "canary_labelled": 3,
        "primary_labelled": 40,
        "difference": 0.1,
        "low": None,
        "high": None,
        "verdict": "inconclusive",
        "test": "DeLong AUC difference, unpaired, 95 % interval",
    }
    assert "+0.1000 (no interval yet): INCONCLUSIVE" in render_quality(
        report(comparison=comparison)
    )
