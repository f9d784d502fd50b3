"""Backoff for transient failures: one pure function, and a bounded wait for a service at start."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from worker.errors import ServiceUnavailable

T = TypeVar("T")


def backoff_s(attempt: int, base_s: float = 0.2, cap_s: float = 5.0) -> float:
    """Exponential backoff: base, 2*base, 4*base, ... capped."""
    return float(min(cap_s, base_s * 2 ** max(0, attempt)))


def retry_until(
    action: Callable[[], T],
    transient: tuple[type[BaseException], ...],
    timeout_s: float,
    what: str,
) -> T:
    """Call `action` until it succeeds or `timeout_s` passes; then one clear ServiceUnavailable."""
    deadline = time.monotonic() + timeout_s
    attempt = 0
    while True:
        try:
            return action()
        except transient as exc:
            if time.monotonic() + backoff_s(attempt) > deadline:
                raise ServiceUnavailable(
                    f"cannot reach {what} after {timeout_s:g}s: {type(exc).__name__}: {exc}"
                ) from None
            time.sleep(backoff_s(attempt))
            attempt += 1
