"""Secure-connection settings: validation, the kafka-python mapping, and secrets kept hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.infra.clients import client_options, security_options
from worker.settings import Settings, load_settings, redact_url


def test_plaintext_is_the_default_and_adds_nothing_else() -> None:
    assert security_options(Settings()) == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_with_scram_maps_to_kafka_python_options(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password="pw",
        kafka_ssl_cafile=str(ca),
    )
    assert security_options(settings) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "pw",
        "ssl_cafile": str(ca),
    }
    assert client_options(settings)["security_protocol"] == "SASL_SSL"


def test_ssl_with_a_client_certificate(tmp_path: Path) -> None:
    for name in ("ca", "cert", "key"):
        (tmp_path / name).write_text("x")
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=str(tmp_path / "ca"),
        kafka_ssl_certfile=str(tmp_path / "cert"),
        kafka_ssl_keyfile=str(tmp_path / "key"),
    )
    assert security_options(settings) == {
        "security_protocol": "SSL",
        "ssl_cafile": str(tmp_path / "ca"),
        "ssl_certfile": str(tmp_path / "cert"),
        "ssl_keyfile": str(tmp_path / "key"),
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SCORER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "needs kafka_sasl_username and kafka_sasl_password",
        ),
        ({"SCORER_KAFKA_SECURITY_PROTOCOL": "TLS"}, "kafka_security_protocol must be one of"),
        ({"SCORER_KAFKA_SASL_MECHANISM": "GSSAPI"}, "kafka_sasl_mechanism must be one of"),
        ({"SCORER_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "kafka_ssl_cafile: no such file"),
        ({"SCORER_REDIS_SSL_CA_FILE": "/nonexistent/ca.pem"}, "redis_ssl_ca_file: no such file"),
        ({"SCORER_REDIS_URL": "http://:pw@host/0"}, "redis_url must start with"),
    ],
)
def test_misconfiguration_is_one_line_naming_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(env, None)
    assert "pw" not in str(caught.value)


def test_secrets_come_from_files_and_never_show(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("kafka-secret\n")
    (tmp_path / "url").write_text("redis://app:redis-secret@db:6379/0\n")
    settings = load_settings(
        {
            "SCORER_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "SCORER_KAFKA_SASL_USERNAME": "svc",
            "SCORER_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "password"),
            "SCORER_REDIS_URL_FILE": str(tmp_path / "url"),
        },
        None,
    )
    assert settings.kafka_sasl_password == "kafka-secret"
    assert settings.redis_url == "redis://app:redis-secret@db:6379/0"
    shown = repr(settings) + repr(settings.redacted())
    assert "kafka-secret" not in shown and "redis-secret" not in shown
    assert settings.redacted()["redis_url"] == "redis://app:***@db:6379/0"


def test_redact_url_masks_only_the_password() -> None:
    assert redact_url("rediss://:p@ss@host:6380/1") == "rediss://:***@host:6380/1"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"
