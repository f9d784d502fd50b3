"""When the retrainer fits a candidate, and what becomes of it.

A check runs every quality_interval_s beside the join loop: it closes the join windows that are
due (counting drops), and a round is due when no canary runs and the window holds
retrain_min_rows, and either retrain_interval_s passed since the last round, or
retrain_min_new_labels rows joined since, or the primary breaches a guard (then at most every
tenth of retrain_interval_s). A round: the active version's estimator (its joblib bytes,
verified like a worker verifies them) → the window's rows in its feature order → fit on the
older rows, judge on the newest (candidate.py) → a better candidate is published through the
ordinary publish path and put on canary in the same transaction; any candidate is recorded in
the registry's change history with its figures.

Each round is taken once however many retrainers run: a retrainer holds a Redis lock while it
fits (a lease it renews, so one killed mid-fit holds it for _LEASE_S at most), checks again
under it that the round is still due, and records the round when it ends. Publishing and the
canary go in one Redis transaction, so a retrainer killed at any point leaves either nothing or
a whole canary.
"""

from __future__ import annotations

import datetime as dt
import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import redis
import structlog
from redis.exceptions import LockError, LockNotOwnedError

from worker.errors import ArtifactRejected, RegistryError
from worker.lifecycle.candidate import (
    Holdout,
    Rejection,
    Split,
    fit_candidate,
    judge_on_holdout,
    split_by_time,
)
from worker.lifecycle.candidate_log import CandidateLog
from worker.lifecycle.guards import RETRAINER, breached_guards
from worker.lifecycle.join import JoinStore
from worker.lifecycle.metrics import RetrainMetrics
from worker.lifecycle.report import build_report
from worker.lifecycle.training_rows import TrainingStore
from worker.models.artifacts import load_estimator, verify_artifact
from worker.models.control import route_message
from worker.models.entry import RegistryEntry
from worker.models.publishing import publish_estimator
from worker.models.registry import CanaryRequest, Registry
from worker.models.usage import UsageStore
from worker.settings import Settings

log = structlog.get_logger(__name__)

_LEASE_S = 30
VERSION_PREFIX = "auto-"


def auto_version(at: float) -> str:
    """The name of a candidate fitted at `at`: auto-<UTC yyyymmddThhmmss>."""
    return VERSION_PREFIX + dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y%m%dT%H%M%S")


class Trainer:
    def __init__(
        self,
        client: redis.Redis,
        store: TrainingStore,
        registry: Registry,
        settings: Settings,
        *,
        metrics: RetrainMetrics,
        announce: Callable[[bytes], None],
    ) -> None:
        self._redis = client
        self._store = store
        self._registry = registry
        self._settings = settings
        self._metrics = metrics
        self._announce = announce
        self._state_key = f"{store.prefix}:state"
        self.log = CandidateLog(client, settings.registry_prefix)
        self._lock = client.lock(
            f"{store.prefix}:fitting", timeout=_LEASE_S, blocking=False, thread_local=False
        )
        self.checks = 0  # checks completed, and rounds carried out: a test's conditions
        self.rounds = 0

    def check(self) -> None:
        """Sweep, then carry out a round if one is due and no other retrainer holds it."""
        now = time.time()
        swept = self._store.sweep(now)
        self._metrics.dropped.labels("unlabelled").inc(swept.unlabelled)
        self._metrics.dropped.labels("unmatched_label").inc(swept.unmatched_labels)
        self._metrics.window_rows.set(self._store.size())
        self._metrics.pending.set(self._store.pending())
        if self._due(now) is not None:
            self._take_round()
        self.checks += 1

    def _take_round(self) -> None:
        with self._leased() as held:
            if not held:
                return
            trigger = self._due(time.time())  # again, under the lock: another may have just run
            if trigger is None:
                return
            joined = self._store.stats().get("joined", 0)
            self._round(trigger)
            self._redis.hset(self._state_key, mapping={"at": repr(time.time()), "joined": joined})
            self.rounds += 1

    def _due(self, now: float) -> str | None:
        """What calls for a round now (None: nothing, or a canary runs)."""
        settings = self._settings
        if self._canary_runs() or self._store.size() < settings.retrain_min_rows:
            return None
        state = self._redis.hgetall(self._state_key)
        last_at = float(state.get(b"at", 0))
        since = now - last_at
        if since >= settings.retrain_interval_s:
            return "interval"
        new = self._store.stats().get("joined", 0) - int(state.get(b"joined", 0))
        if new >= settings.retrain_min_new_labels:
            return "new_labels"
        if since >= settings.retrain_interval_s / 10 and self._primary_breaches():
            return "primary_breach"
        return None

    def _canary_runs(self) -> bool:
        """Never a second canary, never one over a person's; an unreadable route (a hand edit)
        counts as one: it is not ours to replace."""
        try:
            return self._registry.route().canary is not None
        except RegistryError:
            return True

    def _primary_breaches(self) -> bool:
        """Whether the monitors' figures show the primary breaching a guard."""
        client, settings = self._redis, self._settings
        report = build_report(
            JoinStore.for_settings(client, settings),
            UsageStore.for_settings(client, settings),
            self._registry,
            settings,
        )
        return report.primary is not None and bool(breached_guards(report.primary, settings))

    @contextmanager
    def _leased(self) -> Iterator[bool]:
        """The fitting lock, renewed every third of its lease while held."""
        if not self._lock.acquire():
            yield False
            return
        done = threading.Event()

        def renew() -> None:
            while not done.wait(_LEASE_S / 3):
                try:
                    self._lock.reacquire()
                except LockNotOwnedError:  # expired: the round is another's; no publishing
                    log.warning("retrain.lease_lost")
                    return
                except redis.RedisError as exc:  # try again while the lease lasts
                    log.warning("retrain.lease_renewal_failed", error=str(exc))

        renewer = threading.Thread(target=renew, name="retrain-lease", daemon=True)
        renewer.start()
        try:
            yield True
        finally:
            done.set()
            renewer.join()
            with suppress(LockError):  # it expired: nothing of ours to release
                self._lock.release()

    # --- a round ---

    def _round(self, trigger: str) -> None:
        settings = self._settings
        active = self._registry.active_version()
        version = auto_version(time.time())
        if active is None:
            self._reject(version, Rejection.NO_ESTIMATOR, "no active version", {})
            return
        entry = self._registry.entry(active)
        try:
            primary = self._estimator(entry)
        except (ArtifactRejected, RegistryError) as exc:
            self._reject(version, Rejection.NO_ESTIMATOR, str(exc), {"based_on": active})
            return
        matrix = self._store.rows().matrix(entry.schema, settings.max_category_chars)
        window = {"rows": len(matrix.y), "incomplete": matrix.incomplete}
        training: dict[str, Any] = {"based_on": active, "trigger": trigger, "window": window}
        if len(matrix.y) < settings.retrain_min_rows:
            detail = f"{len(matrix.y)} usable rows < retrain_min_rows {settings.retrain_min_rows}"
            self._reject(version, Rejection.TOO_FEW_ROWS, detail, training)
            return
        split = split_by_time(matrix, settings.retrain_holdout_share)
        if split is None:
            detail = "the training rows or the holdout lack clicks or non-clicks"
            self._reject(version, Rejection.ONE_CLASS, detail, training)
            return
        log.info("retrain.fit_started", version=version, based_on=active, rows=len(split.train_y))
        started = time.perf_counter()
        try:
            candidate, method = fit_candidate(
                primary, settings.retrain_method, split.train_x, split.train_y, entry.schema
            )
        except Exception as exc:  # the estimator's own error: recorded, the next round retries
            self._reject(version, Rejection.FIT_FAILED, f"{type(exc).__name__}: {exc}", training)
            return
        fit_s = time.perf_counter() - started
        self._metrics.fit_seconds.observe(fit_s)
        holdout, why_not = judge_on_holdout(
            candidate, primary, split, settings.decision_threshold, entry.schema
        )
        training |= _figures(method, fit_s, split, holdout)
        if why_not is not None:
            self._reject(version, why_not, _comparison_text(holdout), training)
            return
        self._publish(version, entry, candidate, split, training)

    def _estimator(self, entry: RegistryEntry) -> Any:
        """The active version's estimator, from bytes verified as a worker verifies them."""
        if entry.kind != "classifier":
            raise ArtifactRejected(f"{entry.version} is a regressor: only classifiers retrain")
        data = self._registry.artifact(entry.version, "joblib")
        verify_artifact(data, entry.sha256, entry.signature, self._settings.signing_key)
        return load_estimator(data)

    def _publish(
        self,
        version: str,
        entry: RegistryEntry,
        candidate: Any,
        split: Split,
        training: dict[str, Any],
    ) -> None:
        import joblib

        if not self._lock.owned():  # the lease ran out during the fit: the round is another's
            self._reject(version, Rejection.PUBLISH_REFUSED, "the fitting lease ran out", training)
            return
        settings = self._settings
        buffer = io.BytesIO()
        joblib.dump(candidate, buffer)
        note = _note(training)
        try:
            publish_estimator(
                self._registry,
                buffer.getvalue(),
                candidate,
                version,
                features=entry.features,
                note=note,
                signing_key=settings.signing_key,
                # the joblib bytes always: the next round clones the version once promoted
                # (workers with allow_pickle false never load them)
                fmt="joblib" if settings.retrain_format == "joblib" else "both",
                runtime="onnx" if settings.retrain_format == "onnx" else None,
                reference_rows=split.train_x,
                training=training,
                feature_kinds=entry.schema.kinds_by_name(),
                missing="accept" if entry.schema.accepts_missing else "reject",
                canary=CanaryRequest(
                    settings.retrain_canary_percent,
                    entry.version,
                    RETRAINER,
                    f"retrained: {note}",
                    {"training": training},
                ),
            )
        except (RegistryError, ArtifactRejected) as exc:
            self._reject(version, Rejection.PUBLISH_REFUSED, str(exc), training)
            return
        self._metrics.candidates.labels("published", "").inc()
        self.log.add(version, "published", note=note, training=training)
        log.warning("retrain.published", version=version, note=note)
        try:
            self._announce(route_message("canary", self._registry.route()))
        except Exception as exc:  # the change is in Redis: workers see it within active_poll_s
            log.warning("retrain.announce_failed", version=version, error=str(exc))

    def _reject(self, version: str, why: str, detail: str, training: dict[str, Any]) -> None:
        """Recorded in the candidate log and counted; the candidate goes."""
        self._metrics.candidates.labels("rejected", why).inc()
        log.info("retrain.rejected", candidate=version, why=why, detail=detail)
        self.log.add(version, "rejected", why=why, detail=detail, training=training)


def _figures(method: str, fit_s: float, split: Split, holdout: Holdout) -> dict[str, Any]:
    return {
        "method": method,
        "fit_s": round(fit_s, 3),
        "train": {
            "rows": len(split.train_y),
            "from": split.train_span[0],
            "to": split.train_span[1],
        },
        "holdout": {
            "from": split.holdout_span[0],
            "to": split.holdout_span[1],
            **holdout.as_json(),
        },
    }


def _note(training: dict[str, Any]) -> str:
    train, holdout = training["train"], training["holdout"]
    return (
        f"auto: {training['method']} of {training['based_on']} on {train['rows']} rows "
        f"{_utc(train['from'])}..{_utc(train['to'])}; holdout {holdout['rows']} rows: "
        f"AUC {holdout['candidate']['auc']:.4f} vs {holdout['primary']['auc']:.4f}"
    )


def _comparison_text(holdout: Holdout) -> str:
    c = holdout.comparison
    if c.difference is None or c.low is None or c.high is None:
        return "no AUC comparison"
    return (
        f"AUC difference {c.difference:+.4f} (95 % {c.low:+.4f}..{c.high:+.4f}) on "
        f"{holdout.rows} holdout rows; log loss {holdout.candidate.logloss:.4f} vs "
        f"{holdout.primary.logloss:.4f}"
    )


def _utc(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
