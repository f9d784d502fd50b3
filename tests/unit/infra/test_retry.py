from __future__ import annotations

from collections.abc import Iterator

import pytest

from worker.errors import ServiceUnavailable
from worker.infra.retry import backoff_s, retry_until


def test_backoff_doubles_then_caps() -> None:
    assert [backoff_s(n, base_s=0.1, cap_s=0.5) for n in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_retry_returns_once_the_action_succeeds() -> None:
    calls: Iterator[Exception | str] = iter(
        [ConnectionError("down"), ConnectionError("down"), "up"]
    )

    def action() -> str:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert retry_until(action, (ConnectionError,), timeout_s=5, what="x") == "up"


def test_retry_gives_up_with_one_clear_line_after_the_deadline() -> None:
    def action() -> None:
        raise ConnectionError("refused")

    with pytest.raises(
        ServiceUnavailable,
        match=r"cannot reach Redis at r after 0.3s: "
        r"ConnectionError: refused",
    ):
        retry_until(action, (ConnectionError,), timeout_s=0.3, what="Redis at r")
