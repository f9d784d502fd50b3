"""`scorer status`: the active version, the live fleet from heartbeats, lag and dead letters."""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson
import redis
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from worker.errors import RegistryError, ServiceUnavailable
from worker.infra.clients import client_options, connect_redis
from worker.models.registry import Registry
from worker.ops.heartbeat import workers_key_prefix
from worker.settings import Settings


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    status = collect_status(settings, connect_redis(settings))
    if args.json:
        print(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode())
    else:
        print(render_status(status))
    return 0


def collect_status(settings: Settings, client: redis.Redis) -> dict[str, Any]:
    registry = Registry.for_settings(client, settings)
    active = registry.active_version()
    try:
        active_entry = registry.entry(active).summary() if active else None
    except RegistryError as exc:
        active_entry = {"error": str(exc)}
    route, route_error = stored_route(registry)
    workers = read_heartbeats(client, settings.registry_prefix)
    status: dict[str, Any] = {
        "active_version": active,
        "active": active_entry,
        "route": route,
        "route_error": route_error,
        "workers": workers,
        "converged": bool(workers)
        and all(w.get("model_version") == active and w.get("route", {}) == route for w in workers),
    }
    try:
        status["kafka"] = kafka_offsets(settings)
    except (KafkaError, ServiceUnavailable) as exc:
        status["kafka"] = {"error": f"{type(exc).__name__}: {exc}"}
    return status


def stored_route(registry: Registry) -> tuple[dict[str, Any] | None, str | None]:
    """The route key as JSON, or None and why when a hand edit left it unreadable."""
    try:
        return registry.route().as_json(), None
    except RegistryError as exc:
        return None, str(exc)


def read_heartbeats(client: redis.Redis, registry_prefix: str) -> list[dict[str, Any]]:
    keys = sorted(client.scan_iter(match=workers_key_prefix(registry_prefix) + "*", count=500))
    values = client.mget(keys) if keys else []
    return [orjson.loads(value) for value in values if value is not None]


def kafka_offsets(settings: Settings) -> dict[str, Any]:
    """Committed vs end offsets of the group on the input topic, and dead-letter counts."""
    options = client_options(settings)  # startup_timeout_s is command_timeout_s here
    admin = KafkaAdminClient(**options)
    consumer = KafkaConsumer(**options)
    try:
        inputs = _partitions(consumer, settings.input_topic)
        committed = admin.list_group_offsets({settings.group_id: inputs})[settings.group_id]
        dlq = _partitions(consumer, settings.dlq_topic)
        ends = consumer.end_offsets(inputs + dlq)
        starts = consumer.beginning_offsets(dlq)
    finally:
        consumer.close()
        admin.close()
    lag = []
    for tp in inputs:
        done = committed.get(tp)
        offset = done.offset if done is not None and done.offset >= 0 else None
        lag.append(
            {
                "partition": tp.partition,
                "committed": offset,
                "end": ends[tp],
                "lag": max(0, ends[tp] - (offset or 0)),  # Tansu: end offsets can trail
            }
        )
    return {
        "group": settings.group_id,
        "topic": settings.input_topic,
        "lag": lag,
        "total_lag": sum(row["lag"] for row in lag),
        "dead_letter_topic": settings.dlq_topic,
        "dead_letters": sum(ends[tp] - starts[tp] for tp in dlq),
    }


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def render_status(status: dict[str, Any]) -> str:
    route = status["route"]
    shown = route_text(route) if route is not None else f"unreadable: {status['route_error']}"
    lines = [_active_line(status), f"route           {shown}"]
    workers = status["workers"]
    converged = "converged" if status["converged"] else "NOT converged"
    lines.append(
        f"fleet           {len(workers)} live worker(s), {converged} on "
        f"{status['active_version']} and the route"
    )
    if workers:
        lines += [
            "",
            f"{'WORKER':<34}{'VERSION':<10}{'ROUTE':<22}{'READY':<7}{'PARTITIONS':<30}"
            f"{'SCORED':>10}{'DEAD':>7}  UP      LAST ERROR",
        ]
        lines += [_worker_line(w) for w in workers]
    lines += ["", *_kafka_lines(status["kafka"])]
    return "\n".join(lines)


def _active_line(status: dict[str, Any]) -> str:
    active = status["active"]
    if active is None:
        return "active version  (none set)"
    if "error" in active:
        return f"active version  {status['active_version']}  ({active['error']})"
    short_class = active["estimator_class"].rsplit(".", 1)[-1]
    sha256 = active["served_sha256"][:12]
    return (
        f"active version  {active['version']}  {short_class}, sha256 {sha256}, "
        f"{len(active['features'])} features, note: {active['note'] or '-'}"
    )


def _worker_line(worker: dict[str, Any]) -> str:
    partitions = ",".join(p.rsplit("[", 1)[-1].rstrip("]") for p in worker["partitions"]) or "-"
    up_s = time.time() - worker["started_at"]
    error = (
        worker.get("last_error")
        or (f"route not applied: {worker['route_error']}" if worker.get("route_error") else "")
        or worker.get("degraded")
        or ""
    )
    route = route_text(worker.get("route", {}), short=True)
    return (
        f"{worker['worker_id'][:33]:<34}{worker['model_version'] or '-':<10}{route[:21]:<22}"
        f"{'yes' if worker['ready'] else 'no':<7}{partitions[:29]:<30}"
        f"{worker['events_scored']:>10}{worker['dead_lettered']:>7}  "
        f"{_duration(up_s):<8}{error[:60]}"
    )


def route_text(route: dict[str, Any], short: bool = False) -> str:
    """e.g. `canary v3 at 10 %, shadow v4` (short: `v3 10%, s:v4`)."""
    parts = []
    if "canary" in route:
        canary = route["canary"]
        parts.append(
            f"{canary['version']} {canary['percent']:g}%"
            if short
            else f"canary {canary['version']} at {canary['percent']:g} %"
        )
    if route.get("shadow"):
        shadows = ",".join(route["shadow"])
        parts.append(f"s:{shadows}" if short else f"shadow {shadows}")
    return ", ".join(parts) or ("-" if short else "primary only")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _kafka_lines(kafka: dict[str, Any]) -> list[str]:
    if "error" in kafka:
        return [f"kafka           unreachable: {kafka['error']}"]
    lines = [
        f"consumer lag    group {kafka['group']} on {kafka['topic']}: "
        f"{kafka['total_lag']} event(s)",
        f"  {'PARTITION':<11}{'COMMITTED':>10}{'END':>10}{'LAG':>8}",
    ]
    for row in kafka["lag"]:
        committed = "-" if row["committed"] is None else row["committed"]
        lines.append(f"  {row['partition']:<11}{committed:>10}{row['end']:>10}{row['lag']:>8}")
    lines.append(
        f"dead letters    {kafka['dead_letters']} record(s) in {kafka['dead_letter_topic']}"
    )
    return lines
