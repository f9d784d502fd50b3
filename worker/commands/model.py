"""`scorer model publish|activate|rollback|list`: the registry's operator commands.

Each changes the truth in Redis first, then announces it on the control topic (a trigger:
workers that miss it pick the change up within active_poll_s). Each change is recorded with
who made it (`--by`, default user@host) and why (`--reason`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from kafka.errors import KafkaError

from worker.errors import ConfigError, RegistryError, ScorerError
from worker.infra.clients import build_producer, connect_redis
from worker.models.control import activation_message, announce
from worker.models.entry import RegistryEntry
from worker.models.registry import CHANGES_LIMIT, Registry
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.models.features import FeatureKind


def registry_of(settings: Settings) -> Registry:
    return Registry.for_settings(connect_redis(settings), settings)


def author(args: argparse.Namespace) -> str:
    """Who makes a change: `--by`, else the user at this host."""
    return str(args.by) if args.by else f"{getpass.getuser()}@{socket.gethostname()}"


def cmd_model_publish(args: argparse.Namespace, settings: Settings) -> int:
    # scikit-learn and the artifact checks load here only: the other commands start in a
    # fraction of the time (an operator's promote on a busy host, for one)
    from worker.models.artifacts import inspect_estimator, load_estimator
    from worker.models.features import estimator_kinds, resolve_kinds
    from worker.models.publishing import publish_estimator
    from worker.models.reference_file import read_reference

    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {args.file}: {exc.strerror}") from None
    features = [f.strip() for f in args.features.split(",")] if args.features else None
    given = feature_kinds_of(args.feature_types) if args.feature_types else None
    estimator = load_estimator(data)
    names = inspect_estimator(estimator, features).features
    table = read_reference(args.reference, names) if args.reference else None
    # the operator's kinds, else the Pipeline's, else the reference file's columns, else number
    revealed = table.kinds() if table else None
    kinds = resolve_kinds(names, given, estimator_kinds(estimator), revealed)
    rows = table.matrix(kinds) if table else None
    registry = registry_of(settings)
    published = publish_estimator(
        registry,
        data,
        estimator,
        args.version,
        features=features,
        note=args.note,
        signing_key=settings.signing_key,
        fmt=args.format,
        tolerance=args.tolerance,
        reference_rows=rows,
        feature_kinds=dict(zip(names, kinds, strict=True)),
        missing=args.missing,
    )
    entry, compiled, profile = published.entry, published.compiled, published.profile
    schema = entry.schema
    print(
        f"published {entry.version} sha256={entry.served_sha256} {entry.estimator_class} "
        f"features={len(entry.features)} ({len(schema.categories)} category) "
        f"missing={'accept' if schema.accepts_missing else 'reject'} input={schema.form} "
        f"format={entry.format} runtime={entry.runtime}"
    )
    if compiled is not None:
        print(
            f"ONNX (opset {compiled.opset}): largest score difference "
            f"{compiled.max_difference:.3g} on {compiled.probe_rows} probe rows; per event "
            f"joblib {compiled.joblib_us:.2f} µs, onnx {compiled.onnx_us:.2f} µs"
        )
    if published.notice:
        print(published.notice)
    if profile is not None:
        print(f"reference profile from {profile.rows} rows of {args.reference}")
    if args.activate:
        return activate_in(registry, args, settings)
    return 0


def feature_kinds_of(spec: str) -> dict[str, FeatureKind]:
    """`--feature-types`: NAME:KIND,... or @FILE holding a JSON object {name: kind}."""
    from worker.models.features import check_kind, parse_kinds

    try:
        if not spec.startswith("@"):
            return parse_kinds(spec)
        path = Path(spec[1:])
        try:
            given = orjson.loads(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"--feature-types: cannot read {path}: {exc.strerror}") from None
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"--feature-types: {path} is not JSON: {exc}") from None
        if not isinstance(given, dict):
            raise ConfigError(f"--feature-types: {path} must hold a JSON object name: kind")
        return {str(name): check_kind(str(name), kind) for name, kind in given.items()}
    except ValueError as exc:
        raise ConfigError(f"--feature-types: {exc}") from None


def cmd_model_activate(args: argparse.Namespace, settings: Settings) -> int:
    return activate_in(registry_of(settings), args, settings)


def activate_in(registry: Registry, args: argparse.Namespace, settings: Settings) -> int:
    """Activate `args.version` through a registry the command already holds (publish
    --activate: one Redis connection for both)."""
    refuse_unservable(registry, settings, args.version)
    return announce_active(settings, registry.activate(args.version, author(args), args.reason))


def refuse_unloadable(registry: Registry, settings: Settings, *versions: str) -> None:
    """Where pickles are refused (allow_pickle false), a version without ONNX bytes would be
    refused by every worker: say so before anything changes."""
    for version in versions:
        registry.entry(version).runtime_for(settings.allow_pickle)


def refuse_unservable(registry: Registry, settings: Settings, *versions: str) -> None:
    """As refuse_unloadable, and a version stored before publish proved it on probe rows is
    loaded and warmed up here as a worker would: refused if that fails. (Not for rollback,
    which returns to a version that served, and must be quick.)"""
    refuse_unloadable(registry, settings, *versions)
    for version in versions:
        if not registry.entry(version).checked:
            from worker.models.holder import load_version

            load_version(registry, version, settings)


def cmd_model_rollback(args: argparse.Namespace, settings: Settings) -> int:
    registry = registry_of(settings)
    refuse_unloadable(registry, settings, registry.rollback_target())
    return announce_active(settings, registry.rollback(author(args), args.reason))


def announce_active(settings: Settings, entry: RegistryEntry) -> int:
    """After a switch in Redis (the truth): say so, and announce it on the control topic (the
    trigger)."""
    print(f"active version is now {entry.version} (sha256={entry.served_sha256})")
    announce_change(settings, activation_message(entry))
    return 0


def announce_change(settings: Settings, message: bytes) -> None:
    """Publish a control message; if Kafka is away, say the change still arrives by polling."""
    timeout_s = settings.startup_timeout_s  # command_timeout_s, for an operator's command
    try:
        producer = build_producer(settings)
        try:
            announce(producer, settings.control_topic, message, timeout_s)
        finally:
            producer.close(timeout=timeout_s)
    except (ScorerError, KafkaError) as exc:
        print(
            f"scorer: warning: control message not sent ({exc}); workers pick the change up "
            f"within active_poll_s={settings.active_poll_s:g}s",
            file=sys.stderr,
        )


def cmd_model_list(args: argparse.Namespace, settings: Settings) -> int:
    registry = registry_of(settings)
    active = registry.active_version()
    entries = registry.versions()
    roles = _roles(registry, active)
    fates = version_fates(registry.changes(CHANGES_LIMIT))
    if args.json:
        rows = [
            entry.summary()
            | {
                "active": entry.version == active,
                "role": roles.get(entry.version),
                "fate": fates.get(entry.version),
            }
            for entry in entries
        ]
        print(
            orjson.dumps({"active": active, "versions": rows}, option=orjson.OPT_INDENT_2).decode()
        )
        return 0
    width = max([12, *(len(entry.version) + 2 for entry in entries)])
    print(
        f"{'':2}{'VERSION':<{width}}{'CLASS':<28}{'FEATURES':>8}  {'FORMAT':<28}{'SHA256':<14}"
        f"{'CREATED':<22}{'FATE':<13}NOTE"
    )
    for entry in entries:
        mark = {"primary": "*", "canary": "c", "shadow": "s"}.get(roles.get(entry.version, ""), " ")
        created = _iso(entry.created_at)
        short_class = entry.estimator_class.rsplit(".", 1)[-1]
        print(
            f"{mark:2}{entry.version:<{width}}{short_class:<28}{len(entry.features):>8}  "
            f"{_format(entry):<28}{entry.served_sha256[:12]:<14}{created:<22}"
            f"{fates.get(entry.version, '-'):<13}{entry.note}"
        )
    if active is not None and active not in {entry.version for entry in entries}:
        print(f"warning: active key names {active}, which is not in the registry", file=sys.stderr)
    return 0


def cmd_model_candidates(args: argparse.Namespace, settings: Settings) -> int:
    """The retrainer's latest candidates, newest first."""
    from worker.lifecycle.candidate_log import CandidateLog

    records = CandidateLog(connect_redis(settings), settings.registry_prefix).recent(args.limit)
    if args.json:
        print(orjson.dumps({"candidates": records}, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"{'FITTED':<22}{'CANDIDATE':<24}{'OUTCOME':<11}{'HOLDOUT AUC':<18}WHY")
    for record in records:
        holdout = record.get("training", {}).get("holdout")
        auc = (
            f"{holdout['candidate']['auc']:.3f} vs {holdout['primary']['auc']:.3f}"
            if holdout
            else "-"
        )
        why = record.get("why", "") + (f": {record['detail']}" if record.get("detail") else "")
        print(
            f"{_iso(record['at']):<22}{record['candidate']:<24}{record['outcome']:<11}"
            f"{auc:<18}{why or record.get('note', '')}"
        )
    return 0


def version_fates(changes: list[dict[str, object]]) -> dict[str, str]:
    """What became of each version, from the change history (newest first): the last of
    canary, activated, promoted, aborted or rolled back."""
    fates: dict[str, str] = {}
    for change in reversed(changes):
        action = change.get("action")
        version = change.get("version")
        if action == "abort":
            aborted = change.get("aborted")
            canary = aborted.get("canary") if isinstance(aborted, dict) else None
            version = canary.get("version") if isinstance(canary, dict) else None
        elif action == "rollback":
            version = change.get("rolled_back")
        fate = _FATES.get(str(action))
        if isinstance(version, str) and fate:
            fates[version] = fate
    return fates


_FATES = {
    "canary": "canary",
    "activate": "activated",
    "promote": "promoted",
    "abort": "aborted",
    "rollback": "rolled back",
}


def _format(entry: RegistryEntry) -> str:
    """What was stored, what workers use, and, for both, the two timings publish measured."""
    if entry.format != "both" or entry.onnx is None:
        return entry.format
    onnx = entry.onnx
    return f"both->{entry.runtime} ({onnx.joblib_us:.2f}/{onnx.onnx_us:.2f} µs)"


def _roles(registry: Registry, active: str | None) -> dict[str, str]:
    """Each serving version's role (primary, canary, shadow); an unreadable route adds none."""
    roles = {active: "primary"} if active else {}
    try:
        route = registry.route()
    except RegistryError:
        return roles
    if route.canary is not None:
        roles[route.canary.version] = "canary"
    return roles | dict.fromkeys(route.shadow, "shadow")


def _iso(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
