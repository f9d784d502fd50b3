"""`--processes N`: identities that must be unique per process get the child's index."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from worker.ops.supervisor import Supervisor


def test_each_child_gets_its_own_static_member_and_transactional_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[list[str]] = []

    def popen(args: list[str], **kwargs: Any) -> object:
        started.append(args)
        return object()

    monkeypatch.setattr(subprocess, "Popen", popen)
    identities = {"group_instance_id": "scorer-0", "transactional_id": "tx"}
    children = Supervisor(2, ["--config", "w.toml"], 9464, identities)
    for index in range(2):
        children.spawn(index)
    tails = [args[args.index("--config") :] for args in started]
    assert tails == [
        [
            "--config",
            "w.toml",
            "--set",
            "group_instance_id=scorer-0-0",
            "--set",
            "transactional_id=tx-0",
        ],
        [
            "--config",
            "w.toml",
            "--set",
            "group_instance_id=scorer-0-1",
            "--set",
            "transactional_id=tx-1",
        ],
    ]
