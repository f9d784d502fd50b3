"""Prometheus metrics of one monitor, and of one retrainer, each in its own registry.

The quality gauges are read from the latest report at scrape time, so a version that leaves
every window leaves /metrics too (no stale series). Every labelled counter exists from the
start at 0 for its known label values.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from worker.lifecycle.candidate import Rejection
from worker.lifecycle.guards import ACTIONS
from worker.lifecycle.records import LabelReason
from worker.lifecycle.report import Report

# figure in the report -> (gauge name, help)
QUALITY_GAUGES = {
    "labelled": ("scorer_quality_labelled", "Labelled predictions in the quality window"),
    "auc": ("scorer_quality_auc", "ROC AUC over the quality window"),
    "auc_low": ("scorer_quality_auc_low", "Lower end of the AUC's 95 % interval (DeLong)"),
    "auc_high": ("scorer_quality_auc_high", "Upper end of the AUC's 95 % interval (DeLong)"),
    "logloss": ("scorer_quality_logloss", "Log loss over the quality window"),
    "brier": ("scorer_quality_brier", "Brier score over the quality window"),
    "calibration": (
        "scorer_quality_calibration",
        "Mean score over the observed positive rate (1: calibrated)",
    ),
    "accuracy": ("scorer_quality_accuracy", "Accuracy at decision_threshold"),
    "precision": ("scorer_quality_precision", "Precision at decision_threshold"),
    "recall": ("scorer_quality_recall", "Recall at decision_threshold"),
    "mae": ("scorer_quality_mae", "Mean absolute error (regressors)"),
    "rmse": ("scorer_quality_rmse", "Root mean squared error (regressors)"),
}
DROP_REASONS = ("unlabelled", "unmatched_label")


class JoinMetrics:
    """What a joining process (monitor, retrainer) counts, its names under `scorer_<kind>_`:
    records applied (by kind of half, and labels), malformed ones, pairs joined, join windows
    closed unjoined, Redis errors, open joins, readiness."""

    def __init__(self, kind: str, half_kind: str, half: str, topics: str, pairs: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter(
            f"scorer_{kind}_records_total",
            f"{half.capitalize()}s and labels read and applied to the join",
            ["kind"],
            registry=r,
        )
        self.malformed = Counter(
            f"scorer_{kind}_malformed_total",
            f"Records of the {topics} that could not be joined",
            ["reason"],
            registry=r,
        )
        self.joined = Counter(f"scorer_{kind}_joined_total", pairs, registry=r)
        self.dropped = Counter(
            f"scorer_{kind}_dropped_total",
            f"Join windows closed unjoined: a {half} never labelled, or a label whose {half} "
            "never came, within label_window_s",
            ["reason"],
            registry=r,
        )
        self.redis_errors = Counter(
            f"scorer_{kind}_redis_errors_total",
            "Failed Redis round trips (the batch is read again, nothing is committed past it)",
            registry=r,
        )
        self.pending = Gauge(
            f"scorer_{kind}_pending_joins", "Events whose join window is open", registry=r
        )
        self.ready = Gauge("scorer_ready", f"1 when the {kind} process is ready", registry=r)
        for reason in LabelReason.codes():
            self.malformed.labels(reason)
        for drop in DROP_REASONS:
            self.dropped.labels(drop)
        for name in (half_kind, "label"):
            self.records.labels(name)


class MonitorMetrics(JoinMetrics):
    def __init__(self) -> None:
        super().__init__(
            "monitor",
            "prediction",
            "prediction",
            "labels, output or shadow topic",
            "Labelled predictions added to the windows",
        )
        self.guard_actions = Counter(
            "scorer_guard_actions_total",
            "Guardrail actions taken by this monitor: abort, rollback, alert, promote",
            ["action"],
            registry=self.registry,
        )
        for action in ACTIONS:
            self.guard_actions.labels(action)
        self.quality = QualityCollector()
        self.registry.register(self.quality)


class RetrainMetrics(JoinMetrics):
    def __init__(self) -> None:
        super().__init__(
            "retrain",
            "feature",
            "feature event",
            "input or labels topic",
            "Labelled rows added to the training window",
        )
        r = self.registry
        self.candidates = Counter(
            "scorer_retrain_candidates_total",
            "Candidates this retrainer fitted, by outcome (published, rejected) and why a "
            "rejected one was",
            ["outcome", "reason"],
            registry=r,
        )
        self.fit_seconds = Histogram(
            "scorer_retrain_fit_seconds",
            "Time to fit one candidate",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )
        self.window_rows = Gauge(
            "scorer_retrain_window_rows", "Labelled rows in the training window", registry=r
        )
        self.candidates.labels("published", "")
        for rejection in Rejection.codes():
            self.candidates.labels("rejected", rejection)


class QualityCollector(Collector):
    """The latest report's figures as gauges labelled by version and arm."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._report: Report | None = None
        self._breaches: list[tuple[str, str, str]] = []

    def update(self, report: Report, breaches: list[tuple[str, str, str]]) -> None:
        """The latest report, and the (version, role, guard) it breaches."""
        with self._lock:
            self._report, self._breaches = report, breaches

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            report, breaches = self._report, self._breaches
        families = {
            figure: GaugeMetricFamily(name, text, labels=["model_version", "arm"])
            for figure, (name, text) in QUALITY_GAUGES.items()
        }
        psi = GaugeMetricFamily(
            "scorer_drift_psi",
            "PSI against the version's reference profile over drift_window_s (feature "
            '"score": its scores); absent without a reference profile',
            labels=["model_version", "feature"],
        )
        errors = GaugeMetricFamily(
            "scorer_version_error_rate",
            "Share of a version's newest guard_min_labels rows it failed to score",
            labels=["model_version"],
        )
        for version, entry in (report.versions if report else {}).items():
            for arm, figures in entry["arms"].items():
                for figure, family in families.items():
                    value = figures.get(figure)
                    if value is not None:
                        family.add_metric([version, arm], float(value))
            drift = entry["drift"]
            for feature, value in drift.get("features", {}).items():
                psi.add_metric([version, feature], value)
            if drift.get("score_psi") is not None:
                psi.add_metric([version, "score"], drift["score_psi"])
            if entry["errors"]["error_rate"] is not None:
                errors.add_metric([version], entry["errors"]["error_rate"])
        breached = GaugeMetricFamily(
            "scorer_guard_breaches",
            "1 for each guard the canary or the primary breaches at the latest evaluation "
            "(whether or not the guardrails act on it: a primary past guard_rollback_window_s "
            "is only reported)",
            labels=["model_version", "role", "guard"],
        )
        for version, role, guard in breaches:
            breached.add_metric([version, role, guard], 1.0)
        yield from [*families.values(), psi, errors, breached]
