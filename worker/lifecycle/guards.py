"""Guardrails: take a bad version out, and put a proven one in, without waiting for a person.

A canary that breaches a guard is aborted; a primary activated (or promoted) less than
`guard_rollback_window_s` ago that breaches one is rolled back to the version before it (with
none before it, an alert: a log line and a metric, nothing more). The error-rate and drift
guards judge what the version met on live data once it was given `guard_min_labels` rows (no
labels needed); the AUC and log-loss guards judge classifiers once they have
`guard_min_labels` labelled predictions in their role. With `guard_promote_min_labels` set, an
automatic canary (one the retrainer put there; a person's canary is theirs to promote) that
breaches nothing and whose AUC beats the primary's, the whole 95 % interval of the difference
above zero, once it has that many labelled predictions, is promoted; one still not proven
better after five times as many is aborted, so that the retrainer (which waits while a canary
runs) goes on.

Each decision is taken once however many monitors run: a monitor first claims it in Redis
(`SET NX` on a key naming the action, the version and when its role began), and the registry
change itself only goes through while the version still holds that role (a WATCH
transaction), so a person's change in between wins. Every action is recorded in the registry's
change history with its figures, announced on the control topic, logged and counted. A guard
abort takes out the canary only (shadows stay). A version rolled back this way joins
`<prefix>:guard:blocked`: a guard rollback never returns to one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import orjson
import redis
import structlog

from worker.errors import ArtifactRejected, RegistryError
from worker.lifecycle.live import Live
from worker.lifecycle.quality import ClassifierQuality
from worker.lifecycle.report import Judged, Report
from worker.models.control import activation_message, route_message
from worker.models.registry import Registry
from worker.models.route import Route
from worker.settings import Settings

log = structlog.get_logger(__name__)

Action = Literal["abort", "rollback", "alert", "promote"]
ACTIONS: tuple[Action, ...] = ("abort", "rollback", "alert", "promote")
AUTHOR = "scorer-monitor"
RETRAINER = "scorer-retrain"  # the author of automatic canaries
PROMOTE_PATIENCE = 5  # an automatic canary not better after 5 x guard_promote_min_labels goes
_CLAIM_TTL_S = 7 * 24 * 3600
_LEASE_S = 60
# A primary is judged for rollback only when someone chose it (an operator's activate, a
# promote); one that a rollback brought back is not rolled back in turn, so a broken label
# stream cannot walk the fleet down its whole history.
CHOSEN = ("activate", "promote")


@dataclass(frozen=True)
class Decision:
    action: Action
    version: str
    since: float  # when the judged role began: a new canary of the same version is a new case
    reason: str
    figures: dict[str, object]


def breaches(judged: Judged, settings: Settings) -> list[str]:
    """The guards this version breaches, as readable reasons."""
    return list(breached_guards(judged, settings).values())


def breached_guards(judged: Judged, settings: Settings) -> dict[str, str]:
    """Guard name (`min_auc`, `max_psi`, ...) -> readable reason: on live data once the
    version was given guard_min_labels rows, on labels once it has that many labelled
    predictions."""
    found = _live_breaches(judged.live, settings) if judged.live else {}
    quality = judged.quality
    if not isinstance(quality, ClassifierQuality) or quality.labelled < settings.guard_min_labels:
        return found
    if settings.guard_min_auc and quality.auc is not None and quality.auc < settings.guard_min_auc:
        found["min_auc"] = f"AUC {quality.auc:.4f} < guard_min_auc {settings.guard_min_auc:g}"
    if (
        settings.guard_max_logloss
        and quality.logloss is not None
        and quality.logloss > settings.guard_max_logloss
    ):
        found["max_logloss"] = (
            f"log loss {quality.logloss:.4f} > guard_max_logloss {settings.guard_max_logloss:g}"
        )
    comparison = judged.comparison
    # The whole interval below -drop, not the point estimate: the figures are tested again at
    # every evaluation, and a 95 % interval that merely excludes zero was seen to abort a
    # healthy canary within ten minutes (make soak) on a 0.020 dip it was judged on over and
    # over. Below -drop, a chance dip would have to be that much deeper.
    if (
        settings.guard_max_auc_drop
        and comparison is not None
        and comparison.high is not None
        and comparison.difference is not None
        and comparison.high < -settings.guard_max_auc_drop
    ):
        found["max_auc_drop"] = (
            f"AUC {-comparison.difference:.4f} below the primary's (95 % interval of the "
            f"difference {comparison.low:.4f}..{comparison.high:.4f}, wholly below "
            f"-guard_max_auc_drop {-settings.guard_max_auc_drop:g})"
        )
    return found


def current_breaches(report: Report, settings: Settings) -> list[tuple[str, str, str]]:
    """(version, role, guard) for each guard the canary and the primary breach now, however
    old their role: what the breach gauge and its alert show."""
    return [
        (judged.version, judged.role, guard)
        for judged in (report.canary, report.primary)
        if judged is not None
        for guard in breached_guards(judged, settings)
    ]


def _live_breaches(live: Live, settings: Settings) -> dict[str, str]:
    """Error rate (no labels needed) and drift against the reference profile."""
    found = {}
    rate, limit = live.error_rate, settings.guard_max_error_rate
    if (
        limit
        and rate is not None
        and live.recent_rows >= settings.guard_min_labels
        and rate > limit
    ):
        found["max_error_rate"] = (
            f"error rate {rate:.4f} ({live.recent_failed} of its newest {live.recent_rows} rows) "
            f"> guard_max_error_rate {limit:g}"
        )
    psi, limit = live.max_psi, settings.guard_max_psi
    if limit and psi is not None and live.rows >= settings.guard_min_labels and psi > limit:
        drifted = [n for n, v in (live.psi or {}).items() if v > limit]
        if live.score_psi is not None and live.score_psi > limit:
            drifted.append("score")
        found["max_psi"] = f"PSI {psi:.4f} > guard_max_psi {limit:g} ({', '.join(drifted)})"
    return found


def decide(report: Report, settings: Settings, now: float, has_previous: bool) -> list[Decision]:
    """What the guards call for on this report."""
    decisions = []
    canary = report.canary
    if canary is not None and (reasons := breaches(canary, settings)):
        decisions.append(_decision("abort", canary, reasons))
    elif canary is not None and (proof := _proven(canary, settings)):
        decisions.append(_decision("promote", canary, [proof]))
    elif (
        canary is not None
        and report.route.canary is not None
        and (doubt := _unproven(canary, settings, report.route.canary.percent))
    ):
        decisions.append(_decision("abort", canary, [doubt]))
    primary = report.primary
    fresh = (
        primary is not None
        and settings.guard_rollback_window_s > 0
        and primary.started_by in CHOSEN
        and now - primary.since < settings.guard_rollback_window_s
    )
    if primary is not None and fresh and (reasons := breaches(primary, settings)):
        decisions.append(_decision("rollback" if has_previous else "alert", primary, reasons))
    return decisions


def _proven(canary: Judged, settings: Settings) -> str:
    """Why an automatic canary is promoted ("": it is not, or not yet)."""
    needed, comparison, compared = (
        settings.guard_promote_min_labels,
        canary.comparison,
        canary.compared,
    )
    if (
        not needed
        or canary.author != RETRAINER
        or comparison is None
        or comparison.verdict != "better"
        or comparison.difference is None
        or compared is None
        or compared.labelled < needed
    ):
        return ""
    return (
        f"AUC {comparison.difference:+.4f} above the primary's on {compared.labelled} labelled "
        f"predictions (95 % interval of the difference {comparison.low:.4f}.."
        f"{comparison.high:.4f}, above 0; guard_promote_min_labels {needed})"
    )


def _unproven(canary: Judged, settings: Settings, percent: float) -> str:
    """Why an automatic canary that never proved better is taken out ("": it is not): it
    would otherwise hold the route, and the retrainer waits while a canary runs."""
    needed, compared = settings.guard_promote_min_labels, canary.compared
    verdict = canary.comparison.verdict if canary.comparison else "inconclusive"
    bound = comparable_labels(settings.quality_window, percent)
    patience = min(PROMOTE_PATIENCE * needed, max(needed, reachable_labels(bound)))
    if (
        not needed
        or canary.author != RETRAINER
        or compared is None
        or compared.labelled < patience
        or verdict == "better"
    ):
        return ""
    why = (
        f"{PROMOTE_PATIENCE} x guard_promote_min_labels {needed}"
        if patience == PROMOTE_PATIENCE * needed
        else f"as many as the comparison holds for a {percent:g} % canary: up to {bound} in the "
        f"span of the primary's quality_window {settings.quality_window}"
    )
    labelled = compared.labelled
    return f"not proven better after {labelled} labelled predictions ({why}): verdict {verdict}"


def unreachable_promotion(settings: Settings) -> str:
    """Why the monitor can never promote a canary at retrain_canary_percent ("": it can)."""
    needed, percent = settings.guard_promote_min_labels, settings.retrain_canary_percent
    bound = comparable_labels(settings.quality_window, percent)
    if not needed or needed <= reachable_labels(bound):
        return ""
    return (
        f"guard_promote_min_labels {needed} is more than nine tenths of the {bound} labelled "
        f"predictions a {percent:g} % canary gets in the span of the primary's quality_window "
        f"{settings.quality_window}: lower it, or raise quality_window or retrain_canary_percent"
    )


def reachable_labels(bound: int) -> int:
    """Nine tenths of `bound` (comparable_labels): the compared count a canary can be counted on
    to reach, as the primary's window is trimmed and refilled around it."""
    return int(0.9 * bound)


def comparable_labels(quality_window: int, percent: float) -> int:
    """The most labelled canary predictions the comparison can hold: it spans the primary's
    window (its newest quality_window pairs), in which a canary on `percent` % of the traffic
    gets quality_window x percent / (100 - percent), at most its own quality_window. A
    guard_promote_min_labels above this can never be met; patience past it would never end."""
    if percent >= 100:
        return quality_window
    return min(quality_window, int(quality_window * percent / (100 - percent)))


def _decision(action: Action, judged: Judged, reasons: list[str]) -> Decision:
    figures: dict[str, object] = {"role": judged.role, **judged.quality.as_json()}
    if judged.comparison is not None:
        figures["comparison"] = judged.comparison.as_json()
    if judged.live is not None:
        figures |= judged.live.as_json()
    return Decision(action, judged.version, judged.since, "guard: " + "; ".join(reasons), figures)


class GuardKeeper:
    """Carries out decisions, each once across every monitor."""

    def __init__(
        self,
        client: redis.Redis,
        registry: Registry,
        settings: Settings,
        announce: Callable[[bytes], None],
        taken: Callable[[Action], None],
    ) -> None:
        self._redis = client
        self._registry = registry
        self._prefix = f"{settings.registry_prefix}:guard"
        self._allow_pickle = settings.allow_pickle
        self._announce = announce
        self._taken = taken
        # whether a pickle-free worker loads a version: a stored version never changes, so
        # each is read once, not at every evaluation
        self._loadable_without_pickle: dict[str, bool] = {}

    @property
    def blocked_key(self) -> str:
        return f"{self._prefix}:blocked"

    def blocked(self) -> frozenset[str]:
        """Versions a guardrail rolled back: no automatic path activates them again."""
        members = self._redis.smembers(self.blocked_key)
        return frozenset(v.decode() if isinstance(v, bytes) else str(v) for v in members)

    def has_previous(self) -> bool:
        """Whether a rollback has a version to return to (not one a guardrail took out)."""
        active, avoided = self._registry.active_version(), self.avoided()
        return any(v != active and v not in avoided for v in self._registry.history())

    def avoided(self) -> frozenset[str]:
        """Where a guard rollback may not go: the versions a guardrail took out and, in a
        pickle-free fleet (allow_pickle false), those its workers would refuse (no ONNX)."""
        blocked = self.blocked()
        if self._allow_pickle:
            return blocked
        return blocked | {v for v in set(self._registry.history()) if not self._loadable(v)}

    def _loadable(self, version: str) -> bool:
        known = self._loadable_without_pickle.get(version)
        if known is not None:
            return known
        try:
            self._registry.entry(version).runtime_for(allow_pickle=False)
        except RegistryError:  # not (or no longer) stored: asked again next time
            return False
        except ArtifactRejected:
            self._loadable_without_pickle[version] = False
            return False
        self._loadable_without_pickle[version] = True
        return True

    def carry_out(self, decision: Decision) -> bool:
        """True if this monitor took the action (False: another did, or the state moved on)."""
        if not self._claim(decision):
            return False
        try:
            message = self._change_registry(decision)
        except RegistryError as exc:
            log.info(
                "guard.not_needed", action=decision.action, version=decision.version, why=str(exc)
            )
            return False
        except Exception:
            self._redis.delete(self._claim_key(decision))  # not taken: the next check retries
            raise
        if message is not None:
            try:
                self._announce(message)
            except Exception as exc:  # the change is in Redis: workers see it within active_poll_s
                log.warning("guard.announce_failed", version=decision.version, error=str(exc))
        self._redis.expire(self._claim_key(decision), _CLAIM_TTL_S)
        self._taken(decision.action)
        log.warning(
            "guard.action_taken" if decision.action != "alert" else "guard.alert",
            action=decision.action,
            version=decision.version,
            reason=decision.reason,
            figures=decision.figures,
        )
        return True

    def _change_registry(self, decision: Decision) -> bytes | None:
        """The change the decision calls for; its control message (None: nothing to announce)."""
        details: dict[str, object] = {"figures": decision.figures}
        if decision.action == "abort":
            self._registry.abort(
                by=AUTHOR, reason=decision.reason, expect_canary=decision.version, details=details
            )
            return route_message("abort", Route())
        if decision.action == "promote":
            entry = self._registry.promote(
                by=AUTHOR, reason=decision.reason, expect_canary=decision.version, details=details
            )
            return activation_message(entry)
        if decision.action == "rollback":
            entry = self._registry.rollback(
                AUTHOR,
                decision.reason,
                expect_active=decision.version,
                avoid=self.avoided(),
                details=details,
            )
            self._redis.sadd(self.blocked_key, decision.version)
            return activation_message(entry)
        return None

    def _claim(self, decision: Decision) -> bool:
        """A short lease first: a monitor that dies before it acts holds the decision only
        for a minute; `carry_out` makes it last once the action is taken."""
        record = orjson.dumps({"reason": decision.reason, "figures": decision.figures})
        return bool(self._redis.set(self._claim_key(decision), record, nx=True, ex=_LEASE_S))

    def _claim_key(self, decision: Decision) -> str:
        return f"{self._prefix}:decided:{decision.action}:{decision.version}:{decision.since!r}"
