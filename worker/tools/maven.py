"""Fetching what the embedded stack runs (Apache Kafka's jars, Apicurio Registry) from Maven
Central with Maven, once, into a folder of the cache; failures in one line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from worker.errors import ConfigError, ServiceUnavailable

FETCH_TIMEOUT_S = 900


def fetch_into(what: str, partial: Path, *goal: str) -> None:
    """Run `mvn goal...` writing into `partial` (made afresh; removed again if Maven fails).
    `what` names the release in the one-line errors."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ConfigError(f"fetching {what} needs Maven: no `mvn` on PATH")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    command = [mvn, "--batch-mode", "--quiet", *goal, f"-DoutputDirectory={partial}"]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=FETCH_TIMEOUT_S,
            check=False,
            cwd=partial,
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(partial, ignore_errors=True)
        raise ServiceUnavailable(
            f"fetching {what} with Maven took over {FETCH_TIMEOUT_S}s"
        ) from None
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise ServiceUnavailable(
            f"fetching {what} with Maven failed: {maven_error(done.stdout + done.stderr)}"
        )


def maven_error(output: str) -> str:
    errors = [line.removeprefix("[ERROR]").strip() for line in output.splitlines()]
    errors = [line for line in errors if line and "[Help" not in line and "-> [" not in line]
    return errors[0][:300] if errors else "no error message (see `mvn -X`)"
