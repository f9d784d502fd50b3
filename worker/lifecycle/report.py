"""Every version's quality from the shared windows: what `scorer quality` prints, the monitor's
gauges show and the guardrails judge. Any monitor (or the CLI) computes the same report from
Redis, so several monitors give one view per version.

When a version's role started comes from the registry's change records (`canary`, and
`activate`/`promote`/`rollback` for the primary); the canary-versus-primary comparison uses the
pairs of both arms joined since the canary started, so both cover the same span of time.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worker.errors import RegistryError
from worker.lifecycle.join import JoinStore, Window
from worker.lifecycle.live import Live, live_figures
from worker.lifecycle.quality import (
    ClassifierQuality,
    Comparison,
    RegressorQuality,
    classifier_quality,
    compare_auc,
    regressor_quality,
)
from worker.models.registry import CHANGES_LIMIT, Registry
from worker.models.route import Route, parse_route
from worker.models.scoring import ModelKind
from worker.models.usage import UsageStore
from worker.settings import Settings

Quality = ClassifierQuality | RegressorQuality
PRIMARY_ACTIONS = ("activate", "promote", "rollback")


@dataclass(frozen=True)
class Judged:
    """A version in a role the guardrails watch, with its figures since the role began."""

    version: str
    role: str  # canary | primary
    since: float  # when the role began (0: unknown, e.g. a hand-set key)
    quality: Quality
    live: Live | None = None  # error rate and drift on live data (no labels needed)
    comparison: Comparison | None = None  # canary only: against the primary...
    baseline: Quality | None = None  # ...whose figures over the compared span these are
    compared: Quality | None = None  # the canary's own over that span
    started_by: str = ""  # the change that gave the role: canary, activate, promote, rollback
    author: str = ""  # who made that change (scorer-retrain: an automatic canary)


@dataclass(frozen=True)
class Report:
    generated_at: float
    active_version: str | None
    route: Route
    versions: dict[str, dict[str, Any]]  # version -> kind, role, pooled figures, per arm
    canary: Judged | None
    primary: Judged | None
    joins: dict[str, int]
    settings: dict[str, float | int]

    def as_json(self) -> dict[str, Any]:
        canary = self.canary
        return {
            "generated_at": self.generated_at,
            "active_version": self.active_version,
            "route": self.route.as_json(),
            "versions": self.versions,
            "comparison": None
            if canary is None or canary.baseline is None or canary.compared is None
            else {
                "canary": canary.version,
                "primary": self.active_version,
                "since": canary.since,
                "canary_labelled": canary.compared.labelled,
                "primary_labelled": canary.baseline.labelled,
                **(canary.comparison.as_json() if canary.comparison else {}),
            },
            "joins": self.joins,
            "settings": self.settings,
        }


def build_report(
    store: JoinStore,
    usage: UsageStore,
    registry: Registry,
    settings: Settings,
    now: float | None = None,
) -> Report:
    """Every version with labelled predictions, a role now or rows in the drift window, and
    the two the guards judge."""
    now = time.time() if now is None else now
    active, raw_route = registry.read_keys()
    try:
        route = parse_route(raw_route)
    except RegistryError:
        route = Route()
    threshold = settings.decision_threshold
    read = {(version, arm): store.window(version, arm) for version, arm in store.windows()}
    judge = _Judge(read, usage, registry, settings, now, registry.changes(CHANGES_LIMIT))
    serving = (active, *route.versions, *usage.versions(now))
    by_version: dict[str, list[Window]] = {v: [] for v in serving if v}
    for (version, _), window in read.items():
        by_version.setdefault(version, []).append(window)
    versions: dict[str, dict[str, Any]] = {}
    for version, windows in sorted(by_version.items()):
        kind = judge.kinds[version] = _kind(registry, version)
        live = live_figures(usage, registry, version, settings.guard_min_labels, now)
        versions[version] = {
            "role": _role(version, active, route),
            **_version_entry(version, windows, kind, threshold),
            **live.as_json(),
        }
    return Report(
        generated_at=now,
        active_version=active,
        route=route,
        versions=versions,
        canary=judge.canary(route, active),
        primary=judge.primary(active),
        joins={"pending": store.pending(), **store.stats()},
        settings={
            "quality_window": store.quality_window,
            "decision_threshold": threshold,
            "drift_window_s": usage.window_s,
        },
    )


def quality_of(window: Window, kind: ModelKind, threshold: float) -> Quality:
    if kind == "regressor":
        return regressor_quality(window.scores, window.labels)
    return classifier_quality(window.scores, window.labels, threshold)


def role_started(
    changes: list[dict[str, Any]], actions: tuple[str, ...], version: str
) -> tuple[float, str, str]:
    """When `version` last took the role these actions give it, by which action and by whom
    ((0, "", "") if no record says)."""
    for change in changes:  # newest first
        if change.get("action") in actions and change.get("version") == version:
            return float(change["at"]), str(change["action"]), str(change.get("by") or "")
    return 0.0, "", ""


def _version_entry(
    version: str, windows: list[Window], kind: ModelKind, threshold: float
) -> dict[str, Any]:
    pooled = Window(
        version,
        "all",
        [e for w in windows for e in w.event_ids],
        np.concatenate([w.scores for w in windows] or [np.empty(0)]),
        np.concatenate([w.labels for w in windows] or [np.empty(0)]),
        np.concatenate([w.joined_at for w in windows] or [np.empty(0)]),
    )
    return {
        "kind": kind,
        **quality_of(pooled, kind, threshold).as_json(),
        "arms": {w.arm: quality_of(w, kind, threshold).as_json() for w in windows},
    }


@dataclass
class _Judge:
    """A version's figures in its role, since the role began, from the windows the report
    read (each is read from Redis once per report)."""

    windows: dict[tuple[str, str], Window]
    usage: UsageStore
    registry: Registry
    settings: Settings
    now: float
    changes: list[dict[str, Any]]
    kinds: dict[str, ModelKind] = field(default_factory=dict)

    def judged(
        self, version: str, arm: str, since: float, started_by: str = "", author: str = ""
    ) -> Judged:
        """Labelled figures and live ones (errors, drift), both since the role began: a
        version back on canary is not judged on its rows of last time."""
        rows = self.settings.guard_min_labels
        live = live_figures(self.usage, self.registry, version, rows, self.now, since=since)
        quality = self._quality(self._window(version, arm, since), version)
        return Judged(version, arm, since, quality, live, started_by=started_by, author=author)

    def primary(self, active: str | None) -> Judged | None:
        if active is None:
            return None
        return self.judged(active, "primary", *role_started(self.changes, PRIMARY_ACTIONS, active))

    def canary(self, route: Route, active: str | None) -> Judged | None:
        """The canary, compared with the primary over the same span when both classify: from
        when the canary began, or later where either window was trimmed to quality_window
        (the primary fills its window several times faster)."""
        if route.canary is None:
            return None
        version = route.canary.version
        judged = self.judged(version, "canary", *role_started(self.changes, ("canary",), version))
        if active is None or not isinstance(judged.quality, ClassifierQuality):
            return judged
        canary = self._window(version, "canary", judged.since)
        primary = self._window(active, "primary", judged.since)
        firsts = [float(w.joined_at[0]) for w in (canary, primary) if len(w.joined_at)]
        start = max([judged.since, *firsts])
        ours = self._quality(canary.joined_since(start), version)
        baseline = self._quality(primary.joined_since(start), active)
        if not isinstance(ours, ClassifierQuality) or not isinstance(baseline, ClassifierQuality):
            return judged
        comparison = compare_auc(ours, baseline)
        return dataclasses.replace(judged, comparison=comparison, baseline=baseline, compared=ours)

    def _window(self, version: str, arm: str, since: float) -> Window:
        empty = Window(version, arm, [], np.empty(0), np.empty(0), np.empty(0))
        return self.windows.get((version, arm), empty).joined_since(since)

    def _quality(self, window: Window, version: str) -> Quality:
        kind = self.kinds.get(version, "classifier")
        return quality_of(window, kind, self.settings.decision_threshold)


def _role(version: str, active: str | None, route: Route) -> str:
    if version == active:
        return "primary"
    if route.canary is not None and route.canary.version == version:
        return "canary"
    return "shadow" if version in route.shadow else "inactive"


def _kind(registry: Registry, version: str) -> ModelKind:
    """A version's kind from the registry; one no longer there is judged as a classifier."""
    try:
        return registry.entry(version).kind
    except RegistryError:
        return "classifier"
