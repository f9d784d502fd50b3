"""The registry in a real Redis, and the `scorer model` commands over it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import orjson
import pytest

from tests.conftest import artifact_bytes, run_scorer
from worker.errors import RegistryError
from worker.models.artifacts import inspect_estimator, sha256_hex
from worker.models.registry import Registry
from worker.settings import Settings
from worker.tools.synthetic import FEATURES

pytestmark = pytest.mark.integration
FEATURE_LIST = ",".join(FEATURES)


def test_publish_stores_bytes_digest_features_and_library_versions(
    registry: Registry, logistic: Any, tmp_path: Path
) -> None:
    data = artifact_bytes(logistic, tmp_path)
    entry = registry.publish(data, "v1", inspect_estimator(logistic, FEATURES), note="first")
    assert registry.artifact("v1") == data
    stored = registry.entry("v1")
    assert stored == entry
    assert stored.sha256 == sha256_hex(data)
    assert stored.features == FEATURES
    assert stored.kind == "classifier"
    assert stored.sklearn_version and stored.joblib_version and stored.created_at > 0
    assert stored.note == "first" and stored.signature == ""


def test_publishing_an_existing_version_is_refused_and_keeps_the_original(
    registry: Registry, logistic: Any, forest: Any, tmp_path: Path
) -> None:
    first = registry.publish(
        artifact_bytes(logistic, tmp_path), "v1", inspect_estimator(logistic, FEATURES)
    )
    with pytest.raises(RegistryError, match="already exists"):
        registry.publish(
            artifact_bytes(forest, tmp_path), "v1", inspect_estimator(forest, FEATURES)
        )
    assert registry.entry("v1").sha256 == first.sha256


def test_activate_refuses_unknown_versions_and_records_history(
    registry: Registry, publish: Any, logistic: Any
) -> None:
    with pytest.raises(RegistryError, match="v9 is not in the registry"):
        registry.activate("v9")
    publish(logistic, "v1")
    publish(logistic, "v2")
    assert registry.active_version() == "v2"
    assert registry.history() == ["v2", "v1"]


def test_rollback_walks_back_through_history(
    registry: Registry, publish: Any, logistic: Any
) -> None:
    for version in ("v1", "v2", "v3"):
        publish(logistic, version)
    assert registry.rollback().version == "v2"
    assert registry.active_version() == "v2"
    assert registry.rollback().version == "v1"
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback()
    assert registry.active_version() == "v1"


def test_rollback_after_a_hand_set_key_returns_to_the_last_registry_activation(
    registry: Registry, publish: Any, logistic: Any, redis_client: Any, settings: Settings
) -> None:
    publish(logistic, "v1")
    publish(logistic, "v2", activate=False)
    redis_client.set(settings.active_key, "v2")
    assert registry.rollback().version == "v1"


def test_cli_publish_list_activate_rollback(
    settings: Settings, logistic: Any, tmp_path: Path, redis_client: Any
) -> None:
    path = tmp_path / "m.joblib"
    joblib.dump(logistic, path)
    connections = redis_client.info("stats")["total_connections_received"]
    published = run_scorer(
        settings,
        "model",
        "publish",
        str(path),
        "--version",
        "v1",
        "--features",
        FEATURE_LIST,
        "--activate",
        "--note",
        "baseline",
    )
    assert published.returncode == 0, published.stderr
    assert "active version is now v1" in published.stdout
    # publish, check and switch through one connection
    assert redis_client.info("stats")["total_connections_received"] == connections + 1
    assert (
        run_scorer(
            settings, "model", "publish", str(path), "--version", "v2", "--features", FEATURE_LIST
        ).returncode
        == 0
    )

    listing = run_scorer(settings, "model", "list")
    lines = {
        line.split()[1] if line.startswith("*") else line.split()[0]: line
        for line in listing.stdout.splitlines()[1:]
    }
    assert lines["v1"].startswith("*") and "baseline" in lines["v1"]
    assert not lines["v2"].startswith("*")

    assert run_scorer(settings, "model", "activate", "v2").returncode == 0
    listed = orjson.loads(run_scorer(settings, "model", "list", "--json").stdout)
    assert listed["active"] == "v2"
    assert [v["version"] for v in listed["versions"]] == ["v1", "v2"]

    rolled = run_scorer(settings, "model", "rollback")
    assert rolled.returncode == 0 and "active version is now v1" in rolled.stdout


def test_cli_refusals_are_one_line_with_an_exit_code(
    settings: Settings, logistic: Any, tmp_path: Path
) -> None:
    path = tmp_path / "m.joblib"
    joblib.dump(logistic, path)
    garbage = tmp_path / "garbage.joblib"
    garbage.write_bytes(b"not a model")
    cases = [
        (("model", "activate", "nope"), 4, "version nope is not in the registry"),
        (("model", "rollback"), 4, "no earlier version"),
        (("model", "publish", str(path), "--version", "v1"), 5, "unknown feature order"),
        (("model", "publish", str(garbage), "--version", "v1"), 5, "does not load"),
        (("model", "publish", str(tmp_path / "none"), "--version", "v1"), 2, "cannot read"),
    ]
    for args, code, message in cases:
        done = run_scorer(settings, *args)
        assert (done.returncode, done.stderr.count("\n")) == (code, 1), (args, done.stderr)
        assert message in done.stderr


def test_publish_with_signing_key_stores_a_signature(
    settings: Settings, logistic: Any, tmp_path: Path, registry: Registry
) -> None:
    path = tmp_path / "m.joblib"
    joblib.dump(logistic, path)
    signed = settings.replace(signing_key="team-secret")
    done = run_scorer(
        signed, "model", "publish", str(path), "--version", "v1", "--features", FEATURE_LIST
    )
    assert done.returncode == 0, done.stderr
    assert len(registry.entry("v1").signature) == 64
    assert "team-secret" not in done.stdout + done.stderr
