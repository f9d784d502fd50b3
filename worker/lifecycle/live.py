"""What a version meets on live data, from the workers' usage counts (worker/models/usage.py):
its error rate (rows it failed to score; needs no labels) and its drift (PSI of each feature
and of the score against the reference profile published with it). No reference profile, no
drift figures: the report says so rather than invent one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.models.holder import reference_profile
from worker.models.registry import Registry
from worker.models.usage import UsageStore

NO_REFERENCE = "no reference profile: publish the version with --reference to measure drift"


@dataclass(frozen=True)
class Live:
    rows: int  # rows the version was given over drift_window_s
    recent_rows: int  # the newest of them, at least the guard's minimum when there are as many
    recent_failed: int
    psi: dict[str, float] | None  # per feature, highest first; None: no reference profile
    score_psi: float | None

    @property
    def error_rate(self) -> float | None:
        return self.recent_failed / self.recent_rows if self.recent_rows else None

    @property
    def max_psi(self) -> float | None:
        """The largest PSI of any feature or of the score (None: not measured)."""
        score = [self.score_psi] if self.score_psi is not None else []
        values = [*(self.psi or {}).values(), *score]
        return max(values) if values else None

    def as_json(self) -> dict[str, Any]:
        errors = {
            "rows": self.recent_rows,
            "failed": self.recent_failed,
            "error_rate": self.error_rate,
        }
        if self.psi is None:
            return {"errors": errors, "drift": {"reference": False, "note": NO_REFERENCE}}
        drift = {
            "reference": True,
            "rows": self.rows,
            "score_psi": self.score_psi,
            "max_psi": self.max_psi,
            "features": self.psi,
        }
        return {"errors": errors, "drift": drift}


def live_figures(
    usage: UsageStore,
    registry: Registry,
    version: str,
    error_rows: int,
    now: float,
    *,
    since: float = 0.0,
) -> Live:
    """Over drift_window_s, or since `since` if later. `error_rows`: the error rate covers
    the newest buckets holding at least this many rows."""
    window = usage.read(version, now, since)
    recent = window.newest(error_rows)
    profile = reference_profile(registry, version)
    if profile is None:
        return Live(window.rows, recent.rows, recent.failed, None, None)
    counts = np.zeros(profile.width, dtype=np.int64)
    if window.bins is not None:
        seen = window.bins[: profile.width]
        counts[: len(seen)] = seen
    psi, score_psi = profile.psi(counts)
    ranked = dict(sorted(psi.items(), key=lambda item: item[1], reverse=True))
    return Live(window.rows, recent.rows, recent.failed, ranked, score_psi)
