"""Reading workers' JSON log files: when did each worker first do X (after time T)?

The demo and the benchmark measure reloads from these, since a prediction does not name the
process that made it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

ANY = object()  # a match value that accepts any non-empty field


def entry_time(entry: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(entry["timestamp"]).timestamp()


def _entries(path: Path, event: str) -> Iterator[dict[str, Any]]:
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("event") == event:
            yield entry


def first_entries(
    paths: Iterable[Path], event: str, since: float = 0.0, **match: object
) -> list[dict[str, Any]]:
    """The first entry of `event` at or after `since` whose fields match, per log file."""
    found = []
    for path in paths:
        for entry in _entries(path, event):
            if entry_time(entry) >= since and all(
                entry.get(k) == v or (v is ANY and entry.get(k)) for k, v in match.items()
            ):
                found.append(entry)
                break
    return found


def entries_between(
    paths: Iterable[Path], event: str, since: float, until: float
) -> list[dict[str, Any]]:
    """Every entry of `event` in [since, until), from all these log files."""
    return [
        entry
        for path in paths
        for entry in _entries(path, event)
        if since <= entry_time(entry) < until
    ]


def times_between(paths: Iterable[Path], event: str, since: float, until: float) -> list[float]:
    return [entry_time(entry) for entry in entries_between(paths, event, since, until)]


def first_times(
    paths: Iterable[Path], event: str, since: float = 0.0, **match: object
) -> list[float]:
    return [entry_time(e) for e in first_entries(paths, event, since, **match)]


def activation_time(paths: Iterable[Path], since: float, fallback: float) -> float:
    """When `model activate` switched the key: the control message's issued_at as workers
    received it (the command's own start-up time is not part of the switch)."""
    issued = [
        entry["message"]["issued_at"]
        for entry in first_entries(paths, "control.received", since)
        if isinstance(entry.get("message"), dict) and "issued_at" in entry["message"]
    ]
    return min(issued, default=fallback)
