"""What became of each version, read from the registry's change history."""

from __future__ import annotations

from worker.commands.model import version_fates


def test_each_version_ends_with_its_last_change() -> None:
    oldest_first: list[dict[str, object]] = [
        {"action": "activate", "version": "v1"},
        {"action": "canary", "version": "auto-2"},
        {"action": "abort", "aborted": {"canary": {"version": "auto-2", "percent": 10}}},
        {"action": "canary", "version": "auto-3"},
        {"action": "promote", "version": "auto-3"},
        {"action": "canary", "version": "v4"},
        {"action": "shadow", "shadow": ["v5"]},
        {"action": "abort", "aborted": {"shadow": ["v5"]}},  # shadows only: no canary's fate
        {"action": "activate", "version": "v6"},
        {"action": "rollback", "version": "auto-3", "rolled_back": "v6"},
    ]
    assert version_fates(list(reversed(oldest_first))) == {
        "v1": "activated",
        "auto-2": "aborted",
        "auto-3": "promoted",
        "v4": "canary",
        "v6": "rolled back",
    }
