"""docker-compose.yml against the Compose specification's own JSON schema (from the
compose-go module, the one docker compose validates with), and `docker compose config` where
a Docker client with the compose plugin is installed (this machine has none)."""

from __future__ import annotations

import shutil
import subprocess

import jsonschema
import yaml

from tests.unit.deploy import tools


def test_compose_file_is_valid_against_the_compose_schema() -> None:
    document = yaml.safe_load((tools.REPO / "docker-compose.yml").read_text())
    schema = tools.compose_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []
    if _docker_compose_available():
        done = subprocess.run(
            ["docker", "compose", "config", "--quiet"],
            cwd=tools.REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr


def test_the_compose_schema_catches_a_misspelt_key() -> None:
    document = yaml.safe_load((tools.REPO / "docker-compose.yml").read_text())
    document["services"]["worker"]["enviroment"] = {}
    validator = jsonschema.Draft202012Validator(tools.compose_schema())
    assert any("enviroment" in e.message for e in validator.iter_errors(document))


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
    )
    return probe.returncode == 0
