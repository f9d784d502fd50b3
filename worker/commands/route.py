"""`scorer model canary|shadow|promote|abort|route`: try a version on a slice of the traffic,
or on all of it unseen, then promote or abort it.

Like the registry's other commands, each changes the route in Redis (the truth) and announces
it on the control topic (the trigger); each change is recorded with its author and reason.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

import orjson

from worker.commands.model import (
    announce_active,
    announce_change,
    author,
    refuse_unservable,
    registry_of,
)
from worker.commands.status import read_heartbeats, route_text, stored_route
from worker.errors import RegistryError
from worker.infra.clients import connect_redis
from worker.models.control import route_message
from worker.models.registry import Registry
from worker.models.route import Route
from worker.settings import Settings


def cmd_model_canary(args: argparse.Namespace, settings: Settings) -> int:
    registry = registry_of(settings)
    refuse_unservable(registry, settings, args.version)
    route = registry.set_canary(
        args.version, args.percent, force=args.force, by=author(args), reason=args.reason
    )
    print(f"canary is now {args.version} on {args.percent:g} % of keys; route {_text(route)}")
    announce_change(settings, route_message("canary", route))
    return 0


def cmd_model_shadow(args: argparse.Namespace, settings: Settings) -> int:
    if args.off == bool(args.versions):
        raise RegistryError("name the shadow versions, or --off to clear them (not both)")
    registry = registry_of(settings)
    refuse_unservable(registry, settings, *args.versions)
    route = registry.set_shadow(
        [] if args.off else args.versions, by=author(args), reason=args.reason
    )
    shadows = ", ".join(route.shadow) or "none"
    print(f"shadow versions: {shadows}; route {_text(route)}")
    announce_change(settings, route_message("shadow", route))
    return 0


def cmd_model_promote(args: argparse.Namespace, settings: Settings) -> int:
    entry = registry_of(settings).promote(by=author(args), reason=args.reason)
    return announce_active(settings, entry)


def cmd_model_abort(args: argparse.Namespace, settings: Settings) -> int:
    aborted = registry_of(settings).abort(by=author(args), reason=args.reason)
    print(f"aborted route {_text(aborted)}; every event goes to the active version")
    announce_change(settings, route_message("abort", Route()))
    return 0


def cmd_model_route(args: argparse.Namespace, settings: Settings) -> int:
    report = route_report(settings)
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(render_route(report))
    return 0


def route_report(settings: Settings) -> dict[str, Any]:
    """The stored route, what each live worker applies, and the latest changes."""
    client = connect_redis(settings)
    registry = Registry.for_settings(client, settings)
    route, error = stored_route(registry)
    workers = [
        {
            "worker_id": w["worker_id"],
            "route": w.get("route", {}),
            "route_error": w.get("route_error"),
        }
        for w in read_heartbeats(client, settings.registry_prefix)
    ]
    return {
        "route_key": registry.route_key,
        "route": route,
        "error": error,
        "active_version": registry.active_version(),
        "workers": workers,
        "converged": bool(workers) and all(w["route"] == route for w in workers),
        "changes": registry.changes(),
    }


def render_route(report: dict[str, Any]) -> str:
    route = report["route"]
    stored = f"unreadable: {report['error']}" if route is None else route_text(route)
    converged = "converged" if report["converged"] else "NOT converged"
    lines = [
        f"active version  {report['active_version'] or '(none set)'}",
        f"route           {stored}  ({report['route_key']})",
        f"fleet           {len(report['workers'])} live worker(s), {converged} on the route",
    ]
    for worker in report["workers"]:
        applied = route_text(worker["route"])
        problem = f"  NOT APPLIED: {worker['route_error']}" if worker["route_error"] else ""
        lines.append(f"  {worker['worker_id'][:40]:<42}{applied}{problem}")
    if report["changes"]:
        lines += ["", "recent changes"]
        lines += [_change_line(change) for change in report["changes"][:10]]
    return "\n".join(lines)


def _change_line(change: dict[str, Any]) -> str:
    at = dt.datetime.fromtimestamp(change["at"], dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    what = {k: v for k, v in change.items() if k not in {"action", "at", "by", "reason"}}
    details = " ".join(f"{k}={','.join(v) if isinstance(v, list) else v:}" for k, v in what.items())
    reason = f" ({change['reason']})" if change.get("reason") else ""
    return f"  {at}  {change['action']:<9}{details}  by {change['by'] or '-'}{reason}"


def _text(route: Route) -> str:
    return route_text(route.as_json())
