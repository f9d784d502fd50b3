"""The embedded schema registry: Apicurio Registry, one pinned release fetched once by Maven,
run with its in-memory storage on loopback ports; its Confluent-compatible API is what the
worker and `scorer loadgen --format avro` speak (`/apis/ccompat/v7`).

`scorer stack fetch-schema-registry` resolves the release (the `tar.gz` with classifier `all`,
about 160 MB) into a cache outside the repository (`$XDG_CACHE_HOME/scorer/apicurio-<version>`,
else `~/.cache/...`). It needs Java 21 or newer: JAVA_HOME's or PATH's `java` if it is, else the
newest JDK under /usr/lib/jvm that is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from worker.errors import ConfigError, ServiceUnavailable
from worker.tools.apache_kafka import java_major
from worker.tools.maven import fetch_into

APICURIO_VERSION = "3.3.3"
MIN_JAVA = 21
CCOMPAT_PATH = "/apis/ccompat/v7"
HEAP = ("-Xms64m", "-Xmx384m")
_ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"
_JVM_ROOT = Path("/usr/lib/jvm")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "scorer" / f"apicurio-{APICURIO_VERSION}"


def runner() -> Path:
    return cache_dir() / "app" / "quarkus-run.jar"


def fetched() -> bool:
    return runner().is_file()


def fetch_apicurio() -> Path:
    """Resolve the pinned release with Maven and unpack it into the cache, once."""
    if fetched():
        return runner()
    partial = cache_dir() / f"partial-{os.getpid()}"
    what = f"Apicurio Registry {APICURIO_VERSION}"
    fetch_into(what, partial, "dependency:copy", f"-Dartifact={_ARTIFACT}")
    archives = list(partial.glob("*.tar.gz"))
    if not archives:
        shutil.rmtree(partial, ignore_errors=True)
        raise ServiceUnavailable(f"fetching {what} with Maven left no archive in {partial}")
    with tarfile.open(archives[0]) as archive:
        archive.extractall(partial / "app", filter="data")
    archives[0].unlink()
    with contextlib.suppress(OSError):  # another fetch finished first
        (partial / "app").rename(cache_dir() / "app")
    shutil.rmtree(partial, ignore_errors=True)
    return runner()


def java_binary() -> str:
    """A `java` of version MIN_JAVA or newer: JAVA_HOME's or PATH's, else the newest JDK
    under /usr/lib/jvm; ConfigError in one line naming what is there when there is none."""
    java_home = os.environ.get("JAVA_HOME")
    first = [Path(java_home, "bin", "java")] if java_home else []
    on_path = shutil.which("java")
    installed = sorted(_JVM_ROOT.glob("*/bin/java")) if _JVM_ROOT.is_dir() else []
    candidates = [str(p) for p in first if p.is_file()] + ([on_path] if on_path else [])
    candidates += [str(p) for p in installed]
    majors = {java: java_major(java) for java in dict.fromkeys(candidates)}
    usable = [java for java, major in majors.items() if major >= MIN_JAVA]
    if not usable:
        found = ", ".join(f"Java {major}" for major in sorted(set(majors.values()))) or "none"
        raise ConfigError(
            f"Apicurio Registry needs Java {MIN_JAVA} or newer (found: {found}); install one, "
            "or set JAVA_HOME to it"
        )
    if usable[0] in (str(p) for p in first) or usable[0] == on_path:
        return usable[0]
    return max(usable, key=lambda java: majors[java])


def unavailable_reason() -> str | None:
    """Why the schema registry cannot start here, or None if it can."""
    try:
        java_binary()
    except ConfigError as exc:
        return str(exc)
    if not fetched():
        return (
            f"Apicurio Registry {APICURIO_VERSION} is not fetched yet "
            "(run `scorer stack fetch-schema-registry`)"
        )
    return None


def start_apicurio(
    port: int, management_port: int, log_path: Path, host: str
) -> subprocess.Popen[bytes]:
    """The registry on `host:port`, its management (health, metrics) on `management_port`,
    which listens on every address unless told otherwise: bound to `host` too."""
    if not fetched():
        raise ConfigError(
            f"Apicurio Registry {APICURIO_VERSION} is not fetched yet: run "
            "`scorer stack fetch-schema-registry`"
        )
    settings = {
        "quarkus.http.host": host,
        "quarkus.http.port": port,
        "quarkus.management.host": host,
        "quarkus.management.port": management_port,
        "quarkus.log.console.color": "false",
    }
    command = [java_binary(), *HEAP, *(f"-D{k}={v}" for k, v in settings.items())]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [*command, "-jar", str(runner())],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=log_path.parent,
        )
