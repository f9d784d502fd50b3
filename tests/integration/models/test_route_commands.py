"""The route in a real Redis: `scorer model canary|shadow|promote|abort|route`, their refusals
and the record of each change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.conftest import run_scorer
from worker.errors import RegistryError
from worker.models.registry import Registry
from worker.models.route import Canary, Route
from worker.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def three_versions(publish: Any, logistic: Any) -> None:
    publish(logistic, "v1")
    publish(logistic, "v2", activate=False)
    publish(logistic, "v3", activate=False)


@pytest.mark.usefixtures("three_versions")
def test_promote_makes_the_canary_active_through_the_history_and_clears_the_route(
    registry: Registry,
) -> None:
    registry.set_canary("v2", 10, by="ops@test", reason="try v2")
    registry.set_shadow(["v3"])
    assert registry.route() == Route(Canary("v2", 10.0), ("v3",))

    assert registry.promote(by="guard", reason="better").version == "v2"

    assert registry.active_version() == "v2"
    assert registry.history() == ["v2", "v1"]  # so rollback returns to v1
    assert registry.route() == Route()
    change = registry.changes()[0]
    assert (change["action"], change["version"], change["by"], change["reason"]) == (
        "promote",
        "v2",
        "guard",
        "better",
    )
    assert registry.rollback().version == "v1"


@pytest.mark.usefixtures("three_versions")
def test_activating_a_version_the_route_names_takes_it_out_of_the_route(
    registry: Registry,
) -> None:
    registry.set_canary("v2", 5)
    registry.set_shadow(["v3"])

    registry.activate("v3")

    assert registry.route() == Route(Canary("v2", 5.0))


@pytest.mark.usefixtures("three_versions")
def test_refusals_leave_the_route_as_it_was(registry: Registry) -> None:
    registry.set_canary("v2", 10)
    refusals: list[tuple[Callable[[], object], str]] = [
        (lambda: registry.set_canary("v9", 10), "v9 is not in the registry"),
        (lambda: registry.set_canary("v1", 10), "v1 is the active version"),
        (lambda: registry.set_shadow(["v1"]), "v1 is the active version"),
        (lambda: registry.set_shadow(["v2"]), "v2 is the canary"),
    ]
    for refused, message in refusals:
        with pytest.raises(RegistryError, match=message):
            refused()
    assert registry.route() == Route(Canary("v2", 10.0))


@pytest.mark.usefixtures("three_versions")
def test_a_broken_hand_edit_is_reported_and_can_still_be_replaced(
    registry: Registry, redis_client: Any
) -> None:
    redis_client.set(registry.route_key, b"{not json")
    with pytest.raises(RegistryError, match="not valid JSON"):
        registry.route()

    registry.set_canary("v2", 10)

    assert registry.route() == Route(Canary("v2", 10.0))


@pytest.mark.usefixtures("three_versions")
def test_cli_route_commands_refuse_in_one_line_with_their_exit_codes(
    settings: Settings, scorer_main: Any
) -> None:
    refusals = [
        (("canary", "v9", "--percent", "10"), 4, "v9 is not in the registry"),
        (("canary", "v1", "--percent", "10"), 4, "v1 is the active version"),
        (("canary", "v2", "--percent", "60"), 2, "above 50 needs --force"),
        (("canary", "v2", "--percent", "0"), 2, "canary percent"),
        (("promote",), 4, "no canary to promote"),
        (("abort",), 4, "nothing to abort"),
        (("shadow",), 4, "--off"),
        (("shadow", "v9"), 4, "v9 is not in the registry"),
    ]
    for command, code, message in refusals:
        done = scorer_main(settings, "model", *command)
        assert (done.returncode, done.stdout) == (code, ""), (command, done.stderr)
        assert done.stderr.count("\n") == 1 and message in done.stderr, (command, done.stderr)


@pytest.mark.usefixtures("three_versions")
def test_cli_canary_shadow_route_list_and_abort(settings: Settings, scorer_main: Any) -> None:
    canary = run_scorer(settings, "model", "canary", "v2", "--percent", "60", "--force")
    assert canary.returncode == 0, canary.stderr  # one as a user runs it; the rest in-process
    assert "canary is now v2 on 60 % of keys" in canary.stdout
    shadow = scorer_main(settings, "model", "shadow", "v3", "--by", "ci", "--reason", "compare")
    assert shadow.returncode == 0 and "shadow versions: v3" in shadow.stdout

    report = orjson.loads(scorer_main(settings, "model", "route", "--json").stdout)
    assert report["route"] == {"canary": {"version": "v2", "percent": 60.0}, "shadow": ["v3"]}
    assert report["route_key"] == settings.route_key
    assert (report["changes"][0]["by"], report["changes"][0]["reason"]) == ("ci", "compare")
    text = scorer_main(settings, "model", "route").stdout
    assert "canary v2 at 60 %, shadow v3" in text and "by ci (compare)" in text
    listed = orjson.loads(scorer_main(settings, "model", "list", "--json").stdout)
    assert {v["version"]: v["role"] for v in listed["versions"]} == {
        "v1": "primary",
        "v2": "canary",
        "v3": "shadow",
    }

    aborted = scorer_main(settings, "model", "abort", "--reason", "done")
    assert (
        aborted.returncode == 0 and "aborted route canary v2 at 60 %, shadow v3" in aborted.stdout
    )
    assert orjson.loads(scorer_main(settings, "model", "route", "--json").stdout)["route"] == {}
