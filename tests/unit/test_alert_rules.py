"""The shipped alert rules, checked and unit-tested by Prometheus' own promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus"
INSTALL_STEP = "promtool is missing: `make tools` (Debian: apt-get install prometheus)"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(INSTALL_STEP, pytrace=False)  # fails, never skips: the rules must be tested
    return subprocess.run(
        [path, *args], cwd=RULES, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_rules_are_valid() -> None:
    done = promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_rule_fires_when_it_should_and_stays_silent_when_it_should() -> None:
    done = promtool("test", "rules", "alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_rule_has_a_test_and_tells_the_on_call_person_what_to_check() -> None:
    rules = (RULES / "alerts.yml").read_text()
    tests = (RULES / "alerts.test.yml").read_text()
    names = [line.split(":", 1)[1].strip() for line in rules.splitlines() if "- alert:" in line]
    assert len(names) >= 7
    for name in names:
        assert f"alertname: {name}" in tests, f"{name} has no promtool test"
    assert rules.count("summary:") == rules.count("description:") == len(names)
