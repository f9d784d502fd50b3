"""Frozen, validated settings: defaults <- config file (TOML) <- SCORER_* environment <- flags.

Built once, in one place (`load_settings`), and passed in; no other module reads the
environment. Unknown keys and wrong types are a one-line `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal, get_args

from worker.errors import ConfigError

ENV_PREFIX = "SCORER_"
CONFIG_ENV = "SCORER_CONFIG"
# SCORER_* variables that are not settings: the config file's path, and the broker the test
# suite runs on (tests/conftest.py)
NOT_SETTINGS = frozenset({CONFIG_ENV, "SCORER_TEST_BROKER"})
DEFAULT_CONFIG_PATH = Path("config/worker.toml")
# Secrets: never in repr, logs or status; each can also come from a file (SCORER_<NAME>_FILE).
SECRET_SETTINGS = frozenset({"signing_key", "kafka_sasl_password", "redis_url"})

_POSITIVE = (
    "transaction_timeout_ms",
    "batch_max_records",
    "onnx_threads",
    "poll_timeout_ms",
    "topic_partitions",
    "topic_replication",
    "max_event_bytes",
    "max_category_chars",
    "session_timeout_ms",
    "heartbeat_interval_ms",
    "max_poll_interval_ms",
    "active_poll_s",
    "delivery_timeout_s",
    "startup_timeout_s",
    "command_timeout_s",
    "delivery_retry_max_s",
    "batch_log_interval_s",
    "worker_heartbeat_s",
    "producer_batch_bytes",
    "label_window_s",
    "quality_window",
    "quality_interval_s",
    "guard_min_labels",
    "drift_window_s",
    "retrain_window_rows",
    "retrain_min_rows",
    "retrain_interval_s",
    "retrain_min_new_labels",
)
# guards: 0 is off
_NOT_NEGATIVE = (
    "guard_min_auc",
    "guard_max_logloss",
    "guard_max_auc_drop",
    "guard_rollback_window_s",
    "guard_max_psi",
    "guard_max_error_rate",
    "guard_promote_min_labels",
)

# (setting, upper bound, bound included): each must lie above 0 and below (or at) it
_SHARES = (
    ("decision_threshold", 1.0, False),
    ("retrain_holdout_share", 1.0, False),
    ("retrain_sample_percent", 100.0, True),
    ("retrain_canary_percent", 50.0, True),
)

_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")

LogFormat = Literal["auto", "json", "console"]
OffsetReset = Literal["earliest", "latest"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
KafkaClient = Literal["kafka-python", "confluent"]
ProcessingGuarantee = Literal["at-least-once", "exactly-once"]
InputFormat = Literal["json", "avro", "auto"]  # auto: a registry record if it starts 0x00
PartitionAssignment = Literal["eager", "cooperative-sticky"]
GroupProtocol = Literal["classic", "consumer"]
RetrainMethod = Literal["refit", "partial_fit"]
RetrainFormat = Literal["joblib", "onnx", "both"]


@dataclass(frozen=True)
class Settings:
    """Every setting of a worker process; see config/worker.toml for each one's meaning."""

    kafka_bootstrap: str = "localhost:9092"
    kafka_client: KafkaClient = "kafka-python"
    redis_url: str = field(default="redis://localhost:6379/0", repr=False)
    input_topic: str = "ad-click-features"
    output_topic: str = "ad-click-predictions"
    control_topic: str = "model-control"
    dlq_topic: str = "ad-click-features-dlq"
    shadow_topic: str = "ad-click-predictions-shadow"
    labels_topic: str = "ad-click-labels"
    group_id: str = "scorer"
    monitor_group_id: str = "scorer-monitor"
    active_key: str = "scorer:model:active"
    route_key: str = "scorer:model:route"
    registry_prefix: str = "scorer:model"
    metrics_port: int = 9464
    metrics_host: str = "0.0.0.0"
    worker_heartbeat_s: float = 5.0
    signing_key: str = field(default="", repr=False)
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    redis_ssl_ca_file: str = ""
    input_format: InputFormat = "json"
    # a Confluent-compatible schema registry API (Apicurio: http://host:port/apis/ccompat/v7)
    schema_registry_url: str = ""
    active_poll_s: float = 2.0
    batch_max_records: int = 1000
    onnx_threads: int = 1  # onnxruntime threads per call of an ONNX version; processes scale
    allow_pickle: bool = True  # false: workers load ONNX only, never a joblib artifact
    poll_timeout_ms: int = 100
    fetch_max_wait_ms: int = 100
    session_timeout_ms: int = 45000
    heartbeat_interval_ms: int = 3000
    max_poll_interval_ms: int = 300000
    group_instance_id: str = ""
    partition_assignment: PartitionAssignment = "eager"
    group_protocol: GroupProtocol = "classic"
    auto_offset_reset: OffsetReset = "earliest"
    delivery_timeout_s: float = 30.0
    delivery_retry_max_s: float = 30.0
    processing_guarantee: ProcessingGuarantee = "at-least-once"
    transactional_id: str = ""
    transaction_timeout_ms: int = 60000
    linger_ms: int = 5
    producer_batch_bytes: int = 262144
    max_event_bytes: int = 1_000_000
    max_category_chars: int = 256
    topic_partitions: int = 4
    topic_replication: int = 1
    startup_timeout_s: float = 30.0
    command_timeout_s: float = 5.0
    batch_log_interval_s: float = 10.0
    log_format: LogFormat = "auto"
    log_level: str = "info"
    label_window_s: float = 600.0
    quality_window: int = 10000
    quality_interval_s: float = 5.0
    decision_threshold: float = 0.5
    drift_window_s: float = 900.0
    guard_min_labels: int = 500
    guard_min_auc: float = 0.0
    guard_max_logloss: float = 0.0
    guard_max_auc_drop: float = 0.0
    guard_rollback_window_s: float = 0.0
    guard_max_psi: float = 0.0
    guard_max_error_rate: float = 0.0
    guard_promote_min_labels: int = 0
    retrain_group_id: str = "scorer-retrain"
    retrain_window_rows: int = 20000
    retrain_sample_percent: float = 100.0
    retrain_min_rows: int = 2000
    retrain_holdout_share: float = 0.25
    retrain_interval_s: float = 600.0
    retrain_min_new_labels: int = 5000
    retrain_method: RetrainMethod = "refit"
    retrain_format: RetrainFormat = "joblib"
    retrain_canary_percent: float = 10.0

    def __post_init__(self) -> None:
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise ConfigError(f"setting {name} must be positive, got {getattr(self, name)}")
        self._check_lifecycle()
        for name in (
            "input_topic",
            "output_topic",
            "control_topic",
            "dlq_topic",
            "shadow_topic",
            "labels_topic",
        ):
            if not _TOPIC_NAME.fullmatch(getattr(self, name)):
                raise ConfigError(
                    f"setting {name} is not a legal Kafka topic name: "
                    f"{getattr(self, name)!r} (1-249 of A-Z a-z 0-9 . _ -)"
                )
        self._check_security()
        if self.fetch_max_wait_ms < 0 or self.linger_ms < 0:
            raise ConfigError("settings fetch_max_wait_ms and linger_ms must not be negative")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ConfigError("setting heartbeat_interval_ms must be below session_timeout_ms")
        if self.max_poll_interval_ms < self.session_timeout_ms:
            raise ConfigError(
                "setting max_poll_interval_ms must be at least session_timeout_ms "
                "(librdkafka refuses less)"
            )
        self._check_group()
        if (
            self.processing_guarantee == "exactly-once"
            and self.delivery_timeout_s * 1000 > self.transaction_timeout_ms
        ):
            raise ConfigError(
                "setting transaction_timeout_ms must be at least delivery_timeout_s "
                "(a transaction has to outlast the delivery of its records)"
            )
        if not 0 <= self.metrics_port < 65536:
            raise ConfigError(f"setting metrics_port must be a TCP port, got {self.metrics_port}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(
                f"setting log_level must be debug|info|warning|error, got {self.log_level!r}"
            )

    def _check_lifecycle(self) -> None:
        for name in _NOT_NEGATIVE:
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"setting {name} must be 0 (off) or more, got {getattr(self, name)}"
                )
        if self.retrain_min_rows > self.retrain_window_rows:
            raise ConfigError(
                f"setting retrain_min_rows ({self.retrain_min_rows}) must not exceed "
                f"retrain_window_rows ({self.retrain_window_rows})"
            )
        for name, high, closed in _SHARES:
            value = getattr(self, name)
            if not (0 < value <= high if closed else 0 < value < high):
                interval = f"(0, {high:g}{']' if closed else ')'}"
                raise ConfigError(f"setting {name} must be within {interval}, got {value}")

    def _check_group(self) -> None:
        if self.group_instance_id and not _TOPIC_NAME.fullmatch(self.group_instance_id):
            raise ConfigError(
                f"setting group_instance_id is not a legal static member id: "
                f"{self.group_instance_id!r} (1-249 of A-Z a-z 0-9 . _ -)"
            )
        if self.group_protocol == "consumer":
            if self.kafka_client != "confluent":
                raise ConfigError(
                    "setting group_protocol=consumer needs kafka_client=confluent "
                    "(kafka-python 3 speaks only the classic group protocol)"
                )
            if self.partition_assignment != "eager":
                raise ConfigError(
                    "setting partition_assignment does not apply with group_protocol=consumer "
                    "(the broker assigns, incrementally); leave it at eager"
                )

    def _check_security(self) -> None:
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ConfigError(
                f"setting kafka_security_protocol={self.kafka_security_protocol} "
                "needs kafka_sasl_username and kafka_sasl_password"
            )
        for name in (
            "kafka_ssl_cafile",
            "kafka_ssl_certfile",
            "kafka_ssl_keyfile",
            "redis_ssl_ca_file",
        ):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ConfigError(f"setting {name}: no such file {path}")
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ConfigError("settings kafka_ssl_certfile and kafka_ssl_keyfile go together")
        if self.schema_registry_url and not self.schema_registry_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError(
                "setting schema_registry_url must start with http:// or https://, got "
                f"{redact_url(self.schema_registry_url)!r}"
            )
        if self.input_format != "json" and not self.schema_registry_url:
            raise ConfigError(f"setting input_format={self.input_format} needs schema_registry_url")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"setting redis_url must start with redis://, rediss:// or "
                f"unix://, got {redact_url(self.redis_url)!r}"
            )

    def replace(self, **changes: object) -> Settings:
        """A copy with some settings changed, validated again."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def redacted(self) -> dict[str, object]:
        """All settings with secrets masked: safe to log or print."""
        values = dataclasses.asdict(self)
        for name in SECRET_SETTINGS - {"redis_url"}:
            values[name] = "***" if values[name] else ""
        values["redis_url"] = redact_url(self.redis_url)
        return values


def redact_url(url: str) -> str:
    """`redis://user:secret@host` -> `redis://user:***@host`."""
    return re.sub(r"(//[^:/@]*:)[^/]*@", r"\1***@", url)


_FIELDS = {f.name: f for f in fields(Settings)}


_CHOICES = {
    "LogFormat": LogFormat,
    "OffsetReset": OffsetReset,
    "SecurityProtocol": SecurityProtocol,
    "SaslMechanism": SaslMechanism,
    "KafkaClient": KafkaClient,
    "ProcessingGuarantee": ProcessingGuarantee,
    "InputFormat": InputFormat,
    "PartitionAssignment": PartitionAssignment,
    "GroupProtocol": GroupProtocol,
    "RetrainMethod": RetrainMethod,
    "RetrainFormat": RetrainFormat,
}


def setting_names() -> list[str]:
    return list(_FIELDS)


def env_name(setting: str) -> str:
    return ENV_PREFIX + setting.upper()


def coerce(name: str, raw: object) -> object:
    """Convert a raw value (a string from env/flags, or a TOML value) to the setting's type."""
    if name not in _FIELDS:
        raise ConfigError(f"unknown setting {name!r}")
    annotation = _FIELDS[name].type
    if annotation == "str":
        if not isinstance(raw, str):
            raise ConfigError(f"setting {name} must be a string, got {raw!r}")
        return raw
    if annotation in ("int", "float"):
        return _coerce_number(name, raw, int if annotation == "int" else float)
    if annotation == "bool":
        return _coerce_bool(name, raw)
    choices = get_args(_CHOICES[str(annotation)])
    if raw not in choices:
        raise ConfigError(f"setting {name} must be one of {'|'.join(choices)}, got {raw!r}")
    return raw


def _coerce_bool(name: str, raw: object) -> bool:
    """TOML's true/false, or the words from env and flags (true/false, 1/0, yes/no)."""
    if isinstance(raw, bool):
        return raw
    words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    if isinstance(raw, str) and raw.strip().lower() in words:
        return words[raw.strip().lower()]
    raise ConfigError(f"setting {name} must be true or false, got {raw!r}")


def _coerce_number(name: str, raw: object, kind: type[int] | type[float]) -> int | float:
    if isinstance(raw, bool):
        raise ConfigError(f"setting {name} must be a number, got {raw!r}")
    if isinstance(raw, int | float) and (kind is float or isinstance(raw, int)):
        return kind(raw)
    if isinstance(raw, str):
        try:
            return kind(raw.strip().replace("_", ""))
        except ValueError:
            pass
    article = "an integer" if kind is int else "a number"
    raise ConfigError(f"setting {name} must be {article}, got {raw!r}")


def read_config_file(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return data


def _from_env(environ: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key in NOT_SETTINGS:
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name.endswith("_file") and name[: -len("_file")] in SECRET_SETTINGS:
            values[name[: -len("_file")]] = _read_secret_file(key, raw)
            continue
        if name not in _FIELDS:
            raise ConfigError(f"unknown setting in environment: {key}")
        values[name] = raw
    return values


def _read_secret_file(variable: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from None


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    """`--set name=value` flags to a mapping."""
    overrides: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set expects NAME=VALUE, got {pair!r}")
        overrides[name.strip()] = value
    return overrides


def load_settings(
    environ: Mapping[str, str],
    config_path: Path | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Defaults <- config file <- environment <- overrides, every value type-checked."""
    path = config_path or _default_config_path(environ)
    layers: list[Mapping[str, object]] = []
    if path is not None:
        layers.append(read_config_file(path))
    layers += [_from_env(environ), overrides or {}]
    values: dict[str, object] = {}
    for layer in layers:
        for name, raw in layer.items():
            values[name] = coerce(name, raw)
    return Settings(**values)  # type: ignore[arg-type]


def _default_config_path(environ: Mapping[str, str]) -> Path | None:
    if CONFIG_ENV in environ:
        return Path(environ[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None
