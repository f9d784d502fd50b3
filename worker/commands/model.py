"""`scorer model publish|activate|rollback|list`: the registry's operator commands.

Each changes the truth in Redis first, then announces it on the control topic (a trigger:
workers that miss it pick the change up within active_poll_s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable

import orjson
from kafka.errors import KafkaError

from worker.errors import ConfigError, ScorerError
from worker.infra.clients import build_producer, connect_redis
from worker.models.artifacts import inspect_estimator, load_estimator
from worker.models.control import announce
from worker.models.registry import Registry, RegistryEntry
from worker.settings import Settings

_ANNOUNCE_TIMEOUT_S = 10.0


def _registry(settings: Settings) -> Registry:
    return Registry(connect_redis(settings), settings.registry_prefix, settings.active_key)


def cmd_model_publish(args: argparse.Namespace, settings: Settings) -> int:
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {args.file}: {exc.strerror}") from None
    features = [f.strip() for f in args.features.split(",")] if args.features else None
    info = inspect_estimator(load_estimator(data), features)
    entry = _registry(settings).publish(data, args.version, info, args.note, settings.signing_key)
    print(
        f"published {entry.version} sha256={entry.sha256} {entry.estimator_class} "
        f"features={len(entry.features)}"
    )
    if args.activate:
        return _activate(settings, lambda registry: registry.activate(args.version))
    return 0


def cmd_model_activate(args: argparse.Namespace, settings: Settings) -> int:
    return _activate(settings, lambda registry: registry.activate(args.version))


def cmd_model_rollback(args: argparse.Namespace, settings: Settings) -> int:
    return _activate(settings, lambda registry: registry.rollback())


def _activate(settings: Settings, switch: Callable[[Registry], RegistryEntry]) -> int:
    """Switch in Redis (the truth), then announce on the control topic (the trigger)."""
    entry = switch(_registry(settings))
    print(f"active version is now {entry.version} (sha256={entry.sha256})")
    quick = settings.replace(startup_timeout_s=min(settings.startup_timeout_s, _ANNOUNCE_TIMEOUT_S))
    try:
        producer = build_producer(quick)
        try:
            announce(producer, settings.control_topic, entry, _ANNOUNCE_TIMEOUT_S)
        finally:
            producer.close(timeout=_ANNOUNCE_TIMEOUT_S)
    except (ScorerError, KafkaError) as exc:
        print(
            f"scorer: warning: control message not sent ({exc}); workers pick the change up "
            f"within active_poll_s={settings.active_poll_s:g}s",
            file=sys.stderr,
        )
    return 0


def cmd_model_list(args: argparse.Namespace, settings: Settings) -> int:
    registry = _registry(settings)
    active = registry.active_version()
    entries = registry.versions()
    if args.json:
        rows = [entry.summary() | {"active": entry.version == active} for entry in entries]
        print(
            orjson.dumps({"active": active, "versions": rows}, option=orjson.OPT_INDENT_2).decode()
        )
        return 0
    print(f"{'':2}{'VERSION':<12}{'CLASS':<28}{'FEATURES':>8}  {'SHA256':<14}{'CREATED':<22}NOTE")
    for entry in entries:
        mark = "*" if entry.version == active else " "
        created = _iso(entry.created_at)
        short_class = entry.estimator_class.rsplit(".", 1)[-1]
        print(
            f"{mark:2}{entry.version:<12}{short_class:<28}{len(entry.features):>8}  "
            f"{entry.sha256[:12]:<14}{created:<22}{entry.note}"
        )
    if active is not None and active not in {entry.version for entry in entries}:
        print(f"warning: active key names {active}, which is not in the registry", file=sys.stderr)
    return 0


def _iso(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
