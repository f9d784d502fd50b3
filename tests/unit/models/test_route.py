"""The route key's JSON: what a hand edit may hold, and what is refused with a reason."""

from __future__ import annotations

import pytest

from worker.errors import ConfigError, RegistryError
from worker.models.route import Canary, Route, check_percent, parse_route


@pytest.mark.parametrize("raw", [None, b"", b"  ", b"{}"])
def test_nothing_stored_means_the_primary_alone(raw: bytes | None) -> None:
    assert parse_route(raw) == Route()
    assert parse_route(raw).empty


def test_a_canary_and_shadows_read_back_as_written() -> None:
    route = Route(Canary("v3", 12.5), ("v4", "v5"))

    assert parse_route(route.encode()) == route
    assert route.versions == ("v3", "v4", "v5")
    assert Canary("v3", 12.5).buckets == 1250


@pytest.mark.parametrize(
    ("raw", "fault"),
    [
        (b"{canary", "not valid JSON"),
        (b"[]", "must be an object"),
        (b'{"canary": {"version": "v3"}}', '"percent"'),
        (b'{"canary": {"version": "v3", "percent": 0}}', "percent"),
        (b'{"canary": {"version": "v3", "percent": 101}}', "percent"),
        (b'{"canary": {"version": "", "percent": 5}}', "version"),
        (b'{"shadow": "v4"}', "list of version names"),
        (b'{"canary": {"version": "v3", "percent": 5}, "shadow": ["v3"]}', "both"),
        (b'{"canry": {}}', "must be an object"),
    ],
)
def test_a_broken_hand_edit_is_refused_with_its_fault(raw: bytes, fault: str) -> None:
    with pytest.raises(RegistryError, match=fault):
        parse_route(raw)


@pytest.mark.parametrize("percent", [0, -1, 50.01, float("nan"), True, "10"])
def test_a_canary_percent_is_above_0_and_at_most_50(percent: object) -> None:
    with pytest.raises(ConfigError, match="canary percent"):
        check_percent(percent, force=False)


def test_force_allows_up_to_all_of_the_traffic() -> None:
    check_percent(100, force=True)
    with pytest.raises(ConfigError):
        check_percent(100.5, force=True)


def test_a_version_activated_leaves_the_route() -> None:
    route = Route(Canary("v3", 10), ("v4",))

    assert route.without("v3") == Route(None, ("v4",))
    assert route.without("v4") == Route(Canary("v3", 10))
