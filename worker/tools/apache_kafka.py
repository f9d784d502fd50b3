"""The embedded Apache Kafka: one pinned release, fetched once by Maven, run as a single-node
KRaft broker (combined controller and broker) on loopback ports.

`scorer stack fetch-kafka` resolves the jars named by kafka/pom.xml into a cache outside the
repository (`$XDG_CACHE_HOME/scorer/kafka-<version>/lib`, else `~/.cache/...`). Starting a
broker formats its storage on first start, bounds its heap, and sends everything it prints
(its log4j output, and any Java stack trace) to a log file; what reaches the user is one line.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from worker.errors import ConfigError, ServiceUnavailable
from worker.tools.maven import fetch_into

KAFKA_VERSION = "4.4.0"  # the newest 4.x on Maven Central that runs on Java 17 (kafka/pom.xml)
MIN_JAVA = 17
POM = Path(__file__).parent / "kafka" / "pom.xml"
HEAP = ("-Xms256m", "-Xmx512m")
_START_TIMEOUT_S = 60.0

# Single-node settings: every internal topic with one replica, and few threads on a small
# machine. group.initial.rebalance.delay.ms stays at Kafka's default (3 s for a new group's
# first members): without it a lone member's join is followed at once by a second rebalance,
# and kafka-python 3.0.12's poll then sometimes never returns (its IO thread never runs the
# task the poll waits for; 1 in 3 passthrough starts with 0 ms here, none in 12 with 3 s).
_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir}
num.partitions=1
num.network.threads=2
num.io.threads=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=3000
"""

_LOG4J2_PROPERTIES = """\
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = console
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "scorer" / f"kafka-{KAFKA_VERSION}"


def jars_dir() -> Path:
    return cache_dir() / "lib"


def jars_present() -> bool:
    return (jars_dir() / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()


def java_binary() -> str:
    """The `java` of JAVA_HOME, else of PATH, if it is Java 17 or newer."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    java = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
    if java is None:
        raise ConfigError(
            f"Apache Kafka needs Java {MIN_JAVA} or newer: no `java` on PATH or in JAVA_HOME"
        )
    major = java_major(java)
    if major < MIN_JAVA:
        raise ConfigError(f"Apache Kafka needs Java {MIN_JAVA} or newer; {java} is Java {major}")
    return java


def java_major(java: str) -> int:
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"cannot run {java} -version: {exc}") from None
    return parse_java_major(done.stderr + done.stdout)


def parse_java_major(version_output: str) -> int:
    """17 from `openjdk version "17.0.15"`, 8 from `java version "1.8.0_401"`; 0 if unknown."""
    found = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not found:
        return 0
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def unavailable_reason() -> str | None:
    """Why Apache Kafka cannot start here (no Java, or jars not fetched), or None if it can."""
    try:
        java_binary()
    except ConfigError as exc:
        return str(exc)
    if not jars_present():
        return f"Apache Kafka {KAFKA_VERSION} is not fetched yet (run `scorer stack fetch-kafka`)"
    return None


def fetch_kafka() -> Path:
    """Resolve the pinned release's jars with Maven into the cache, once; return their folder."""
    if jars_present():
        return jars_dir()
    partial = cache_dir() / f"lib.partial-{os.getpid()}"
    goal = ("--file", str(POM), "dependency:copy-dependencies", "-DincludeScope=runtime")
    fetch_into(f"Apache Kafka {KAFKA_VERSION}", partial, *goal)
    try:
        partial.rename(jars_dir())
    except OSError:  # another fetch finished first
        shutil.rmtree(partial, ignore_errors=True)
    return jars_dir()


def start_kafka(
    port: int, controller_port: int, home: Path, log_path: Path, host: str
) -> subprocess.Popen[bytes]:
    """A single-node KRaft broker whose data lives under `home` (kept across restarts)."""
    java = java_binary()
    if not jars_present():
        raise ConfigError(
            f"Apache Kafka {KAFKA_VERSION} is not fetched yet: run `scorer stack fetch-kafka`"
        )
    home = home.resolve()
    data_dir = home / "data"
    properties, log4j = home / "server.properties", home / "log4j2.properties"
    home.mkdir(parents=True, exist_ok=True)
    properties.write_text(
        _SERVER_PROPERTIES.format(
            host=host, port=port, controller_port=controller_port, data_dir=data_dir
        )
    )
    log4j.write_text(_LOG4J2_PROPERTIES)
    java_args = [
        java,
        *HEAP,
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        f"{jars_dir()}/*",
    ]
    if not (data_dir / "meta.properties").exists():
        _format_storage(java_args, properties, log_path)
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [*java_args, "kafka.Kafka", str(properties)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _format_storage(java_args: list[str], properties: Path, log_path: Path) -> None:
    cluster_id = _cluster_id()
    command = [*java_args, "kafka.tools.StorageTool", "format", "-t", cluster_id]
    with log_path.open("ab") as log_file:
        done = subprocess.run(
            [*command, "-c", str(properties)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            timeout=_START_TIMEOUT_S,
            check=False,
        )
    if done.returncode != 0:
        raise ServiceUnavailable(
            f"formatting Apache Kafka's storage failed with code {done.returncode} "
            f"(log: {log_path})"
        )


def _cluster_id() -> str:
    """16 random bytes in base64url, as Kafka's own; like Kafka's, never one that starts with
    "-", which the storage tool would read as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
