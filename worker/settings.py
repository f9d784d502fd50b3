"""Frozen, validated settings: defaults <- config file (TOML) <- SCORER_* environment <- flags.

Built once, in one place (`load_settings`), and passed in; no other module reads the
environment. Unknown keys and wrong types are a one-line `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal, get_args

from worker.errors import ConfigError

ENV_PREFIX = "SCORER_"
CONFIG_ENV = "SCORER_CONFIG"
DEFAULT_CONFIG_PATH = Path("config/worker.toml")
SECRET_SETTINGS = frozenset({"signing_key"})

LogFormat = Literal["auto", "json", "console"]
OffsetReset = Literal["earliest", "latest"]


@dataclass(frozen=True)
class Settings:
    """Every setting of a worker process; see config/worker.toml for each one's meaning."""

    kafka_bootstrap: str = "localhost:9092"
    redis_url: str = "redis://localhost:6379/0"
    input_topic: str = "ad-click-features"
    output_topic: str = "ad-click-predictions"
    control_topic: str = "model-control"
    dlq_topic: str = "ad-click-features-dlq"
    group_id: str = "scorer"
    active_key: str = "scorer:model:active"
    registry_prefix: str = "scorer:model"
    metrics_port: int = 9464
    signing_key: str = field(default="", repr=False)  # a secret: never in repr or logs
    active_poll_s: float = 2.0
    batch_max_records: int = 1000
    poll_timeout_ms: int = 100
    fetch_max_wait_ms: int = 100
    session_timeout_ms: int = 45000
    heartbeat_interval_ms: int = 3000
    max_poll_interval_ms: int = 300000
    auto_offset_reset: OffsetReset = "earliest"
    delivery_timeout_s: float = 30.0
    delivery_retry_max_s: float = 30.0
    linger_ms: int = 5
    max_event_bytes: int = 1_000_000
    topic_partitions: int = 4
    topic_replication: int = 1
    startup_timeout_s: float = 30.0
    batch_log_interval_s: float = 10.0
    log_format: LogFormat = "auto"
    log_level: str = "info"

    def __post_init__(self) -> None:
        for name in (
            "batch_max_records",
            "poll_timeout_ms",
            "topic_partitions",
            "topic_replication",
            "max_event_bytes",
            "session_timeout_ms",
            "heartbeat_interval_ms",
            "max_poll_interval_ms",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"setting {name} must be positive, got {getattr(self, name)}")
        for name in (
            "active_poll_s",
            "delivery_timeout_s",
            "startup_timeout_s",
            "delivery_retry_max_s",
            "batch_log_interval_s",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"setting {name} must be positive, got {getattr(self, name)}")
        if self.fetch_max_wait_ms < 0 or self.linger_ms < 0:
            raise ConfigError("settings fetch_max_wait_ms and linger_ms must not be negative")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ConfigError("setting heartbeat_interval_ms must be below session_timeout_ms")
        if not 0 < self.metrics_port < 65536:
            raise ConfigError(f"setting metrics_port must be a TCP port, got {self.metrics_port}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(
                f"setting log_level must be debug|info|warning|error, got {self.log_level!r}"
            )

    def replace(self, **changes: object) -> Settings:
        """A copy with some settings changed, validated again."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def redacted(self) -> dict[str, object]:
        """All settings with secrets masked: safe to log or print."""
        values = dataclasses.asdict(self)
        for name in SECRET_SETTINGS:
            values[name] = "***" if values[name] else ""
        return values


_FIELDS = {f.name: f for f in fields(Settings)}


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
    choices = get_args({"LogFormat": LogFormat, "OffsetReset": OffsetReset}[str(annotation)])
    if raw not in choices:
        raise ConfigError(f"setting {name} must be one of {'|'.join(choices)}, got {raw!r}")
    return raw


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
        if not key.startswith(ENV_PREFIX) or key == CONFIG_ENV:
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
