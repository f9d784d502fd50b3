"""Choosing and preparing the embedded Apache Kafka: the decisions, and the one-line refusals
when Java or Maven is missing (no broker is started here; tests/integration/tools does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.tools import apache_kafka
from worker.tools.stack import choose_broker


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('openjdk version "25" 2025-09-16', 25),
        ('java version "1.8.0_401"', 8),
        ("no version here", 0),
    ],
)
def test_java_major_version_is_read_from_java_version(output: str, major: int) -> None:
    assert apache_kafka.parse_java_major(output) == major


def test_without_java_the_refusal_is_one_line_naming_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError) as refused:
        apache_kafka.java_binary()
    assert str(refused.value) == (
        "Apache Kafka needs Java 17 or newer: no `java` on PATH or in JAVA_HOME"
    )
    with pytest.raises(ConfigError, match="no `java`"):
        choose_broker("kafka")
    kind, notice = choose_broker("auto")
    assert kind == "tansu"
    assert notice == (
        "broker: Tansu (Apache Kafka needs Java 17 or newer: no `java` on PATH or in JAVA_HOME)"
    )


def test_an_old_java_is_refused_with_its_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text("#!/bin/sh\necho 'java version \"1.8.0_401\"' >&2\n")
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=r"needs Java 17 or newer; .*/bin/java is Java 8$"):
        apache_kafka.java_binary()


def test_jars_not_fetched_make_auto_take_tansu_and_kafka_say_how_to_fetch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(apache_kafka, "java_binary", lambda: "/usr/bin/java")
    assert not apache_kafka.jars_present()
    assert choose_broker("auto") == (
        "tansu",
        "broker: Tansu (Apache Kafka 4.4.0 is not fetched yet (run `scorer stack fetch-kafka`))",
    )
    with pytest.raises(ConfigError, match=r"run `scorer stack fetch-kafka`"):
        choose_broker("kafka")
    jar = apache_kafka.jars_dir() / f"kafka_2.13-{apache_kafka.KAFKA_VERSION}.jar"
    jar.parent.mkdir(parents=True)
    jar.touch()
    assert choose_broker("auto") == ("kafka", "broker: Apache Kafka 4.4.0 (KRaft)")
    assert choose_broker("tansu") == ("tansu", "broker: Tansu")


def test_fetching_without_maven_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError) as refused:
        apache_kafka.fetch_kafka()
    assert str(refused.value) == "fetching Apache Kafka 4.4.0 needs Maven: no `mvn` on PATH"


def test_an_unknown_broker_choice_is_refused() -> None:
    with pytest.raises(ConfigError, match="--broker takes one of kafka, tansu, auto"):
        choose_broker("zookeeper")


def test_the_pinned_version_is_the_one_maven_resolves() -> None:
    assert (
        f"<kafka.version>{apache_kafka.KAFKA_VERSION}</kafka.version>"
        in apache_kafka.POM.read_text()
    )
