"""`scorer demo --quality` end to end (about a minute and a half: `make soak`, outside CI)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import run_scorer

pytestmark = [pytest.mark.integration, pytest.mark.soak]


def test_a_better_canary_is_promoted_on_its_verdict_and_a_broken_one_aborted(
    tmp_path: Path,
) -> None:
    """500 events/s, clicks 2 s late: v2's verdict turns better and it is promoted; v3, put
    on canary next, is aborted by the monitor within 30 s of reaching guard_min_labels."""
    done = run_scorer(None, "demo", "--quality", "--rate", "500", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "v2: better" in done.stdout
    took = re.search(r"automatic abort [\d.]+ s, ([\d.]+) s after it had 300 labels", done.stdout)
    assert took is not None, done.stdout[-2000:]
    assert float(took.group(1)) <= 30
    print(done.stdout[done.stdout.index("=== quality demo report") :])
