"""Real parts for integration tests: one broker and one redis-server per session, on free
loopback ports; per test, unique topics, group and Redis keys; workers that always stop."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import joblib
import orjson
import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from worker.infra.clients import client_options, connect_redis, ensure_topics, topic_reader
from worker.lifecycle.monitor import Monitor
from worker.lifecycle.retrainer import Retrainer
from worker.models.artifacts import inspect_estimator
from worker.models.registry import Registry
from worker.service import Worker
from worker.settings import Settings, env_name
from worker.tools.processes import EMBEDDED_GROUP_TIMING
from worker.tools.stack import (
    BROKER_NAMES,
    BrokerKind,
    choose_broker,
    free_port,
    start_broker,
    start_redis,
    start_tansu,
    stop_broker,
)
from worker.tools.synthetic import FEATURES, event_bytes, feature_rows, train

REPO = Path(__file__).resolve().parent.parent


def wait_until(condition: Callable[[], object], timeout: float = 30, what: str = "") -> None:
    """End a test on a condition, never on a sleep; a failure names what never happened."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.05)


# The broker every integration test runs on: SCORER_TEST_BROKER=kafka|tansu|auto (default
# auto: Apache Kafka when Java and its fetched jars are here, else Tansu).
TEST_BROKER, TEST_BROKER_NOTICE = choose_broker(os.environ.get("SCORER_TEST_BROKER", "auto"))


def pytest_report_header() -> str:
    return TEST_BROKER_NOTICE


def on_tansu() -> bool:
    """For the few places that must work around a quirk of Tansu, named where they do."""
    return TEST_BROKER == "tansu"


class Broker:
    """The session's broker process; `start` after `stop` brings it back on the same port
    (Apache Kafka with its topics and offsets; Tansu empty, as it keeps nothing)."""

    def __init__(self, kind: BrokerKind, home: Path) -> None:
        self.kind = kind
        self.name = BROKER_NAMES[kind]
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._home = home
        self.process = start_broker(kind, self.port, home)

    def stop(self) -> None:
        stop_broker(self.process)

    def start(self) -> None:
        self.process = start_broker(self.kind, self.port, self._home)


class RedisServer:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = data_dir
        self.process = start_redis(self.port, data_dir)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def start(self) -> None:
        self.process = start_redis(self.port, self._dir)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    server = Broker(TEST_BROKER, tmp_path_factory.mktemp("broker"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def settings(broker: Broker, redis_server: RedisServer) -> Settings:
    """Unique topics, group and keys per test; embedded-broker group timing."""
    tag = uuid.uuid4().hex[:10]
    return Settings(
        kafka_bootstrap=broker.bootstrap,
        redis_url=redis_server.url,
        input_topic=f"in-{tag}",
        output_topic=f"out-{tag}",
        control_topic=f"control-{tag}",
        dlq_topic=f"dlq-{tag}",
        shadow_topic=f"shadow-{tag}",
        labels_topic=f"labels-{tag}",
        group_id=f"group-{tag}",
        monitor_group_id=f"monitor-{tag}",
        retrain_group_id=f"retrain-{tag}",
        active_key=f"test:{tag}:active",
        route_key=f"test:{tag}:route",
        registry_prefix=f"test:{tag}",
        active_poll_s=1.0,
        metrics_port=0,
        metrics_host="127.0.0.1",
        worker_heartbeat_s=1.0,
        startup_timeout_s=15,
        delivery_timeout_s=10,
        delivery_retry_max_s=2,
        log_format="json",
        **EMBEDDED_GROUP_TIMING,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["kafka-python", "confluent"])
def client_settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The test's settings with each Kafka client in turn, for the delivery-critical tests."""
    return settings.replace(kafka_client=request.param)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment a `scorer` subprocess needs to use these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCORER_")}
    env |= {env_name(name): str(value) for name, value in dataclasses.asdict(settings).items()}
    return env


def run_scorer(
    settings: Settings | None, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`scorer ARGS` as a user runs it; without settings, with no SCORER_* set at all."""
    env = (
        settings_env(settings)
        if settings is not None
        else {k: v for k, v in os.environ.items() if not k.startswith("SCORER_")}
    )
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@dataclasses.dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def scorer_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Ran]:
    """`scorer ARGS` through `worker.cli.main` in this process: the same parser, settings
    from the same SCORER_* environment and the same error mapping as `run_scorer`, without a
    second of interpreter start-up per call. Logging stays as the session has it (configured
    here it would write to capsys' stream)."""
    from worker import cli

    monkeypatch.setattr(cli, "configure_logging", lambda *args: None)

    def run(settings: Settings, *args: str) -> Ran:
        with monkeypatch.context() as env:
            for name in [n for n in os.environ if n.startswith("SCORER_")]:
                env.delenv(name)
            for name, value in settings_env(settings).items():
                env.setenv(name, value)
            code = cli.main(list(args))
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


@pytest.fixture
def registry(settings: Settings) -> Registry:
    return Registry.for_settings(connect_redis(settings), settings)


@pytest.fixture
def redis_client(settings: Settings) -> redis.Redis:
    return connect_redis(settings)


@pytest.fixture(scope="session")
def logistic() -> Any:
    return train("logistic", n=2000, seed=1)


@pytest.fixture(scope="session")
def forest() -> Any:
    return train("gbm", n=2000, seed=2)


def artifact_bytes(model: Any, tmp_path: Path) -> bytes:
    path = tmp_path / f"model-{uuid.uuid4().hex[:6]}.joblib"
    joblib.dump(model, path)
    return path.read_bytes()


@pytest.fixture
def publish(registry: Registry, settings: Settings, tmp_path: Path) -> Callable[..., None]:
    def publish_(model: Any, version: str, activate: bool = True) -> None:
        info = inspect_estimator(model, FEATURES)
        registry.publish(
            artifact_bytes(model, tmp_path), version, info, "test", settings.signing_key
        )
        if activate:
            registry.activate(version)

    return publish_


@pytest.fixture
def producer(settings: Settings) -> Iterator[KafkaProducer]:
    ensure_topics(settings)
    client = KafkaProducer(**client_options(settings), max_request_size=10_000_000)
    yield client
    client.close()


def send_events(producer: KafkaProducer, topic: str, rows: Any, prefix: str = "e") -> list[str]:
    ids = [f"{prefix}-{i}" for i in range(len(rows))]
    for event_id, row in zip(ids, rows, strict=True):
        producer.send(topic, key=event_id.encode(), value=event_bytes(event_id, row))
    producer.flush()
    return ids


class SteadyStream:
    """About 1,000 events/s (ids e-0, e-1, ...) from a thread, until stopped: for changes
    made mid-stream."""

    def __init__(self, producer: KafkaProducer, topic: str, rows: Any) -> None:
        self.sent = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._send, args=(producer, topic, rows))
        self._thread.start()

    def _send(self, producer: KafkaProducer, topic: str, rows: Any) -> None:
        for i, row in enumerate(rows):
            producer.send(topic, key=f"e-{i}".encode(), value=event_bytes(f"e-{i}", row))
            self.sent = i + 1
            if i % 50 == 49:
                producer.flush()
                if self._stopping.wait(0.05):
                    break
        producer.flush()

    def stop(self) -> int:
        """Stop, flush and say how many events were sent."""
        self._stopping.set()
        self._thread.join()
        return self.sent


class TopicReader:
    """Reads output and dead-letter topics from the beginning, in a background thread (with
    `isolation_level="read_committed"`, as a downstream reader of exactly-once output)."""

    def __init__(self, settings: Settings, isolation_level: str = "read_uncommitted") -> None:
        self._settings = settings
        self._isolation_level = isolation_level
        self.predictions: list[dict[str, Any]] = []
        self.shadow_predictions: list[dict[str, Any]] = []
        self.dead_letters: list[Any] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        consumer = topic_reader(
            self._settings,
            [self._settings.output_topic, self._settings.dlq_topic, self._settings.shadow_topic],
            isolation_level=self._isolation_level,
        )
        while not self._stop.is_set():
            for tp, records in consumer.poll(timeout_ms=100).items():
                with self._lock:
                    if tp.topic == self._settings.dlq_topic:
                        self.dead_letters += records
                        continue
                    decoded = [
                        orjson.loads(r.value) | {"_key": r.key, "_partition": r.partition}
                        for r in records
                    ]
                    if tp.topic == self._settings.output_topic:
                        self.predictions += decoded
                    else:
                        self.shadow_predictions += decoded
        consumer.close()

    def scored_ids(self) -> set[str]:
        with self._lock:
            return {p["event_id"] for p in self.predictions}

    def start(self) -> TopicReader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def reader(settings: Settings, producer: KafkaProducer) -> Iterator[TopicReader]:
    topic_reader = TopicReader(settings).start()
    yield topic_reader
    topic_reader.stop()


class InThread:
    """A service (a Worker, a Monitor) run in a thread of the test process; stop() is its
    graceful path, and whatever its run raised is kept in `error`."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.service.run()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.service.stop()
        self.thread.join(30)
        name = type(self.service).__name__
        assert not self.thread.is_alive(), f"{name} did not stop within 30 s"


class RunningWorker(InThread):
    def __init__(self, settings: Settings) -> None:
        self.worker = Worker(settings)
        super().__init__(self.worker)

    def model_version(self) -> str | None:
        model = self.worker.holder.current()
        return model.version if model else None

    def assigned(self) -> set[tuple[str, int]]:
        return self.worker.loop.partitions.assigned if self.worker.loop else set()


@pytest.fixture
def worker_factory() -> Iterator[Callable[[Settings], RunningWorker]]:
    started: list[RunningWorker] = []

    def start(settings: Settings) -> RunningWorker:
        started.append(RunningWorker(settings))
        return started[-1]

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()


class RunningMonitor(InThread):
    def __init__(self, settings: Settings) -> None:
        self.monitor = Monitor(settings)
        super().__init__(self.monitor)

    def evaluated_again(self, times: int = 2) -> Callable[[], bool]:
        """A condition: this many more evaluations than now have completed."""
        target = self.monitor.evaluations + times
        return lambda: self.monitor.evaluations >= target


class RunningRetrainer(InThread):
    def __init__(self, settings: Settings) -> None:
        self.retrainer = Retrainer(settings)
        super().__init__(self.retrainer)

    def rounds(self) -> int:
        """Rounds this retrainer carried out: candidates it fitted or found nothing to fit."""
        trainer = self.retrainer.trainer
        return trainer.rounds if trainer else 0

    def checked_again(self, times: int = 2) -> Callable[[], bool]:
        """A condition: this many more checks than now have completed."""
        trainer = self.retrainer.trainer
        target = (trainer.checks if trainer else 0) + times
        return lambda: (
            self.retrainer.trainer is not None and self.retrainer.trainer.checks >= target
        )


R = TypeVar("R", bound=InThread)


def _in_threads(kind: Callable[[Settings], R]) -> Iterator[Callable[[Settings], R]]:
    """A factory of services of one kind in threads; each is stopped at teardown, and must
    not have failed."""
    started: list[R] = []

    def start(settings: Settings) -> R:
        started.append(kind(settings))
        return started[-1]

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()
        assert running.error is None, running.error


@pytest.fixture
def monitor_factory() -> Iterator[Callable[[Settings], RunningMonitor]]:
    yield from _in_threads(RunningMonitor)


@pytest.fixture
def retrainer_factory() -> Iterator[Callable[[Settings], RunningRetrainer]]:
    yield from _in_threads(RunningRetrainer)


@pytest.fixture
def process_factory(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """`scorer ...` as a real process; every one is killed at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(settings: Settings, *args: str) -> subprocess.Popen[bytes]:
        log_path = tmp_path / f"scorer-{len(started)}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "worker", *args],
                env=settings_env(settings),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        process.log_path = log_path  # type: ignore[attr-defined]
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)


def log_events(process: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    entries = []
    for line in process.log_path.read_text(errors="replace").splitlines():  # type: ignore[attr-defined]
        try:
            entries.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return entries


@pytest.fixture
def refusing_output(settings: Settings, broker: Broker, tmp_path: Path) -> Iterator[Settings]:
    """Settings whose output topic the broker refuses every record of, the way a real broker
    refuses what it will not take. On Apache Kafka: a topic whose size limit no prediction
    fits (MESSAGE_TOO_LARGE; Kafka 4 no longer refuses acks=all on a topic that demands more
    in-sync replicas than it has). Tansu enforces no topic limits, so there a broker of the
    test's own refuses by schema (INVALID_RECORD)."""
    topic = f"refused-{settings.output_topic}"
    if broker.kind == "kafka":
        create_refusing_topic(settings, topic)
        yield settings.replace(output_topic=topic)
        return
    schema = {
        "type": "object",
        "properties": {"value": {"type": "object", "required": ["never_present"]}},
    }
    (tmp_path / f"{topic}.json").write_bytes(orjson.dumps(schema))
    port = free_port()
    process = start_tansu(port, tmp_path / "broker.log", schema_dir=tmp_path)
    yield settings.replace(kafka_bootstrap=f"127.0.0.1:{port}", output_topic=topic)
    process.terminate()
    process.wait(10)


def create_refusing_topic(settings: Settings, topic: str) -> None:
    """An Apache Kafka topic whose size limit refuses any record batch of ours (predictions,
    dead letters) but not the broker's own transaction markers (about 80 bytes)."""
    admin = KafkaAdminClient(**client_options(settings))
    try:
        config = {"max.message.bytes": "120"}
        admin.create_topics([NewTopic(topic, settings.topic_partitions, 1, topic_configs=config)])
    finally:
        admin.close()


def last_offsets(futures: list[Any]) -> dict[TopicPartition, int]:
    """Per partition, the offset of the last record these sends (acknowledged) wrote."""
    last: dict[TopicPartition, int] = {}
    for future in futures:
        metadata = future.get()
        tp = metadata.topic_partition
        last[tp] = max(last.get(tp, -1), metadata.offset)
    return last


def committed(settings: Settings, partitions: dict[TopicPartition, int]) -> dict[Any, Any]:
    group = KafkaConsumer(
        **client_options(settings), group_id=settings.group_id, enable_auto_commit=False
    )
    try:
        return {tp: group.committed(tp) for tp in partitions}
    finally:
        group.close(autocommit=False)


def steady_stream(
    producer: KafkaProducer, topic: str, count: int, per_s: float = 1000.0
) -> tuple[list[str], threading.Thread]:
    """`count` events at about `per_s`, sent from a thread (join it for the last one)."""
    ids = [f"e-{i}" for i in range(count)]
    rows = feature_rows(count, seed=7)

    def send() -> None:
        for i, (event_id, row) in enumerate(zip(ids, rows, strict=True)):
            producer.send(topic, key=event_id.encode(), value=event_bytes(event_id, row))
            if i % 100 == 99:
                producer.flush()
                threading.Event().wait(100 / per_s)
        producer.flush()

    sender = threading.Thread(target=send)
    sender.start()
    return ids, sender


def assert_exactly_once(reader: TopicReader, ids: list[str]) -> None:
    """Every event id has a prediction, and only one."""
    wait_until(lambda: reader.scored_ids() == set(ids), timeout=90, what="every event scored")
    wait_until(lambda: len(reader.predictions) >= len(ids), what="the last transaction read")
    threading.Event().wait(1.0)  # a duplicate, were there one, would arrive by now
    counts = Counter(p["event_id"] for p in reader.predictions)
    assert [event_id for event_id, n in counts.items() if n > 1] == []
    assert len(reader.predictions) == len(ids)
