"""`scorer demo --scenario drift` end to end (about two and a half minutes: `make soak`,
outside CI)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import run_scorer

pytestmark = [pytest.mark.integration, pytest.mark.soak]


def test_a_retrained_version_is_promoted_after_the_truth_changes(tmp_path: Path) -> None:
    """500 events/s, clicks 2 s late, the truth changing at 60 s: an automatic version is live
    within 3 minutes of the change, and its live AUC is within 0.02 of an offline model's."""
    done = run_scorer(None, "demo", "--scenario", "drift", "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    took = re.search(r"live within 180 s of the change: True \(([\d.]+) s\)", done.stdout)
    assert took is not None and float(took.group(1)) <= 180, done.stdout[-2000:]
    assert (tmp_path / "drift-demo.png").stat().st_size > 10_000
    print(done.stdout[done.stdout.index("=== drift demo report") :])
