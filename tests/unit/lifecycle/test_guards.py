"""Guardrail decisions from hand-built reports: which guard a version breaches, and what then."""

from __future__ import annotations

import pytest

from worker.lifecycle.guards import breaches, comparable_labels, decide, unreachable_promotion
from worker.lifecycle.quality import ClassifierQuality, Comparison, RegressorQuality
from worker.lifecycle.report import Judged, Quality, Report
from worker.models.route import Canary, Route
from worker.settings import Settings

NOW = 1_700_000_000.0
OFF = Settings().replace(
    guard_min_labels=100,
    guard_min_auc=0.0,
    guard_max_logloss=0.0,
    guard_max_auc_drop=0.0,
    guard_rollback_window_s=0.0,
)
GUARDED = OFF.replace(
    guard_min_auc=0.7, guard_max_logloss=0.6, guard_max_auc_drop=0.05, guard_rollback_window_s=3600
)


def _quality(labelled: int = 500, auc: float | None = 0.9, logloss: float | None = 0.3) -> Quality:
    return ClassifierQuality(
        labelled=labelled,
        positives=labelled // 2,
        invalid_labels=0,
        auc=auc,
        auc_low=None if auc is None else auc - 0.02,
        auc_high=None if auc is None else auc + 0.02,
        auc_variance=None if auc is None else 1e-4,
        logloss=logloss,
        brier=0.1,
        mean_score=0.5,
        positive_rate=0.5,
        calibration=1.0,
        accuracy=0.8,
        precision=0.8,
        recall=0.8,
    )


def _drop(difference: float, low: float, high: float) -> Comparison:
    return Comparison(difference, low, high, "worse" if high < 0 else "inconclusive")


def _canary(quality: Quality | None = None, comparison: Comparison | None = None) -> Judged:
    return Judged(
        "v2", "canary", NOW - 60, quality or _quality(), comparison=comparison, baseline=_quality()
    )


def _primary(
    quality: Quality | None = None, since: float = NOW - 60, started_by: str = "activate"
) -> Judged:
    started_by = started_by if since else ""
    return Judged("v1", "primary", since, quality or _quality(), started_by=started_by)


def _report(canary: Judged | None = None, primary: Judged | None = None) -> Report:
    route = Route(Canary(canary.version, 10.0)) if canary is not None else Route()
    active = primary.version if primary is not None else None
    return Report(NOW, active, route, {}, canary, primary, {}, {})


BAD = _quality(auc=0.55, logloss=0.9)


def test_a_healthy_version_breaches_nothing() -> None:
    assert breaches(_canary(comparison=_drop(-0.01, -0.03, 0.01)), GUARDED) == []


def test_nothing_breaches_below_guard_min_labels() -> None:
    assert breaches(_canary(_quality(labelled=99, auc=0.1, logloss=5.0)), GUARDED) == []
    assert len(breaches(_canary(_quality(labelled=100, auc=0.1, logloss=5.0)), GUARDED)) == 2


def test_every_guard_is_off_at_zero() -> None:
    assert breaches(_canary(BAD, _drop(-0.4, -0.5, -0.3)), OFF) == []


def test_an_auc_below_guard_min_auc_breaches_with_a_readable_reason() -> None:
    reasons = breaches(_canary(_quality(auc=0.65)), OFF.replace(guard_min_auc=0.7))
    assert reasons == ["AUC 0.6500 < guard_min_auc 0.7"]


def test_an_auc_at_guard_min_auc_or_unknown_does_not_breach() -> None:
    settings = OFF.replace(guard_min_auc=0.7)
    assert breaches(_canary(_quality(auc=0.7)), settings) == []
    assert breaches(_canary(_quality(auc=None)), settings) == []


def test_a_logloss_above_guard_max_logloss_breaches_with_a_readable_reason() -> None:
    settings = OFF.replace(guard_max_logloss=0.6)
    assert breaches(_canary(_quality(logloss=0.75)), settings) == [
        "log loss 0.7500 > guard_max_logloss 0.6"
    ]
    assert breaches(_canary(_quality(logloss=0.6)), settings) == []
    assert breaches(_canary(_quality(logloss=None)), settings) == []


def test_an_auc_drop_breaches_when_the_whole_interval_is_below_minus_the_setting() -> None:
    settings = OFF.replace(guard_max_auc_drop=0.05)
    reasons = breaches(_canary(comparison=_drop(-0.10, -0.14, -0.06)), settings)
    assert reasons == [
        "AUC 0.1000 below the primary's (95 % interval of the difference -0.1400..-0.0600, "
        "wholly below -guard_max_auc_drop -0.05)"
    ]


@pytest.mark.parametrize(
    "comparison",
    [
        pytest.param(_drop(-0.08, -0.2, 0.04), id="interval-includes-zero"),
        pytest.param(_drop(-0.08, -0.2, 0.0), id="interval-ends-at-zero"),
        pytest.param(_drop(-0.04, -0.06, -0.02), id="drop-within-the-setting"),
        pytest.param(_drop(-0.05, -0.07, -0.03), id="drop-equal-to-the-setting"),
        # the soak's false alarm: worse, and past the setting, but not certainly past it
        pytest.param(_drop(-0.08, -0.12, -0.04), id="interval-reaching-above-minus-the-setting"),
        pytest.param(_drop(-0.07, -0.09, -0.05), id="interval-ending-at-minus-the-setting"),
        pytest.param(Comparison(None, None, None, "inconclusive"), id="no-figures"),
        pytest.param(None, id="no-comparison"),
    ],
)
def test_an_auc_drop_does_not_breach_unless_certain_and_too_big(
    comparison: Comparison | None,
) -> None:
    assert breaches(_canary(comparison=comparison), OFF.replace(guard_max_auc_drop=0.05)) == []


def test_a_regressor_never_breaches() -> None:
    judged = Judged("v2", "canary", NOW, RegressorQuality(10_000, mae=99.0, rmse=99.0))
    assert breaches(judged, GUARDED.replace(guard_min_labels=1)) == []


def test_a_breaching_canary_is_aborted_with_its_reasons_and_figures() -> None:
    canary = _canary(BAD, _drop(-0.3, -0.4, -0.2))
    [decision] = decide(_report(canary, _primary()), GUARDED, NOW, has_previous=True)
    assert (decision.action, decision.version, decision.since) == ("abort", "v2", NOW - 60)
    assert decision.reason.startswith("guard: AUC 0.5500 < guard_min_auc 0.7; log loss 0.9000")
    assert decision.reason.count("; ") == 2
    assert decision.figures["role"] == "canary"
    assert decision.figures["auc"] == 0.55
    assert decision.figures["comparison"] == _drop(-0.3, -0.4, -0.2).as_json()


def test_a_healthy_report_calls_for_nothing() -> None:
    assert decide(_report(_canary(), _primary()), GUARDED, NOW, has_previous=True) == []


def test_a_fresh_breaching_primary_is_rolled_back_when_there_is_a_previous_version() -> None:
    report = _report(primary=_primary(BAD, since=NOW - 3599))
    [decision] = decide(report, GUARDED, NOW, has_previous=True)
    assert (decision.action, decision.version, decision.since) == ("rollback", "v1", NOW - 3599)
    assert decision.figures["role"] == "primary"
    assert "comparison" not in decision.figures


def test_a_fresh_breaching_primary_with_no_previous_version_is_an_alert() -> None:
    report = _report(primary=_primary(BAD))
    assert [d.action for d in decide(report, GUARDED, NOW, has_previous=False)] == ["alert"]


@pytest.mark.parametrize(
    ("since", "settings"),
    [
        pytest.param(NOW - 3600, GUARDED, id="as-old-as-the-window"),
        pytest.param(NOW - 86_400, GUARDED, id="older-than-the-window"),
        pytest.param(0.0, GUARDED, id="unknown-start"),
        pytest.param(NOW - 60, GUARDED.replace(guard_rollback_window_s=0), id="rollback-off"),
    ],
)
def test_a_breaching_primary_that_is_not_fresh_calls_for_nothing(
    since: float, settings: Settings
) -> None:
    assert decide(_report(primary=_primary(BAD, since)), settings, NOW, has_previous=True) == []


@pytest.mark.parametrize("started_by", ["activate", "promote"])
def test_a_primary_someone_chose_is_judged(started_by: str) -> None:
    report = _report(primary=_primary(BAD, started_by=started_by))
    assert [d.action for d in decide(report, GUARDED, NOW, has_previous=True)] == ["rollback"]


def test_a_primary_a_rollback_brought_back_is_not_rolled_back_in_turn() -> None:
    """A broken label stream must not walk the fleet down its whole history."""
    report = _report(primary=_primary(BAD, started_by="rollback"))
    assert decide(report, GUARDED, NOW, has_previous=True) == []


def test_a_breaching_canary_and_fresh_primary_are_both_decided() -> None:
    report = _report(_canary(BAD), _primary(BAD))
    decisions = decide(report, GUARDED, NOW, has_previous=True)
    assert [(d.action, d.version) for d in decisions] == [("abort", "v2"), ("rollback", "v1")]


# --- promotion of an automatic canary ---

PROMOTING = OFF.replace(guard_promote_min_labels=300)
BETTER = Comparison(0.05, 0.02, 0.08, "better")
UNSURE = Comparison(0.01, -0.01, 0.03, "inconclusive")


def _auto_canary(
    comparison: Comparison = BETTER,
    labelled: int = 300,
    author: str = "scorer-retrain",
    quality: Quality | None = None,
) -> Judged:
    return Judged(
        "auto-1",
        "canary",
        NOW - 60,
        quality or _quality(labelled),
        comparison=comparison,
        baseline=_quality(),
        compared=_quality(labelled),
        started_by="canary",
        author=author,
    )


def test_an_automatic_canary_better_past_guard_promote_min_labels_is_promoted() -> None:
    (decision,) = decide(_report(_auto_canary(), _primary()), PROMOTING, NOW, True)
    assert (decision.action, decision.version) == ("promote", "auto-1")
    assert decision.reason == (
        "guard: AUC +0.0500 above the primary's on 300 labelled predictions (95 % interval of "
        "the difference 0.0200..0.0800, above 0; guard_promote_min_labels 300)"
    )
    assert decision.figures["comparison"] == BETTER.as_json()


@pytest.mark.parametrize(
    "canary",
    [
        pytest.param(_auto_canary(labelled=299), id="below-guard_promote_min_labels"),
        pytest.param(_auto_canary(Comparison(0.05, -0.01, 0.11, "inconclusive")), id="unsure"),
        pytest.param(_auto_canary(Comparison(-0.05, -0.08, -0.02, "worse")), id="worse"),
        pytest.param(_auto_canary(author="alice@host"), id="a-persons-canary"),
    ],
)
def test_no_promotion_without_the_labels_the_verdict_and_the_retrainer(canary: Judged) -> None:
    assert decide(_report(canary, _primary()), PROMOTING, NOW, True) == []


def test_promotion_is_off_at_zero() -> None:
    assert decide(_report(_auto_canary(), _primary()), OFF, NOW, True) == []


def test_a_better_canary_that_breaches_a_guard_is_aborted_not_promoted() -> None:
    settings = PROMOTING.replace(guard_min_auc=0.95)
    (decision,) = decide(_report(_auto_canary(), _primary()), settings, NOW, True)
    assert decision.action == "abort"


def test_an_automatic_canary_never_proven_better_is_aborted_after_five_times_the_labels() -> None:
    settings = PROMOTING.replace(quality_window=20_000)  # a 10 % canary: up to 2,222 compared
    assert decide(_report(_auto_canary(UNSURE, 1499), _primary()), settings, NOW, True) == []
    (decision,) = decide(_report(_auto_canary(UNSURE, 1500), _primary()), settings, NOW, True)
    assert (decision.action, decision.version) == ("abort", "auto-1")
    assert decision.reason == (
        "guard: not proven better after 1500 labelled predictions "
        "(5 x guard_promote_min_labels 300): verdict inconclusive"
    )
    persons = _auto_canary(UNSURE, 5000, author="alice@host")
    assert decide(_report(persons, _primary()), PROMOTING, NOW, True) == []


def test_patience_ends_where_the_primarys_window_bounds_the_comparison() -> None:
    """With quality_window 10,000 a 10 % canary never has more than 1,111 labelled predictions
    in the compared span, fewer than 5 x 300: it is aborted at nine tenths of that instead of
    holding the route (and the retrainer) for ever."""
    assert comparable_labels(10_000, 10.0) == 1111
    assert comparable_labels(10_000, 50.0) == 10_000 == comparable_labels(10_000, 100.0)
    assert decide(_report(_auto_canary(UNSURE, 998), _primary()), PROMOTING, NOW, True) == []
    (decision,) = decide(_report(_auto_canary(UNSURE, 999), _primary()), PROMOTING, NOW, True)
    assert (decision.action, decision.version) == ("abort", "auto-1")
    assert decision.reason == (
        "guard: not proven better after 999 labelled predictions (as many as the comparison "
        "holds for a 10 % canary: up to 1111 in the span of the primary's quality_window 10000): "
        "verdict inconclusive"
    )
    assert unreachable_promotion(PROMOTING) == ""  # 300 of the 1,111 a 10 % canary can get


def test_patience_never_ends_before_a_promotion_could_happen() -> None:
    """guard_promote_min_labels 1,050 with a bound of 1,111: the canary is judged at 1,050,
    not aborted at nine tenths of the bound first; the monitor warns that it is that tight."""
    settings = OFF.replace(guard_promote_min_labels=1050)
    assert decide(_report(_auto_canary(UNSURE, 1049), _primary()), settings, NOW, True) == []
    (decision,) = decide(_report(_auto_canary(labelled=1050), _primary()), settings, NOW, True)
    assert decision.action == "promote"
    assert unreachable_promotion(settings).startswith("guard_promote_min_labels 1050 is more")
