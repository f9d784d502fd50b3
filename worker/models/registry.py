"""The model registry in Redis: versions with their artifacts, the active key, the switch history.

Layout under the prefix P (default `scorer:model`):
  P:version:<V>  hash: the entry's fields (entry.py: features, their kinds, ...), the
                 artifact bytes (joblib) and when published so onnx_artifact (ONNX bytes)
                 and reference (a reference profile for drift, JSON). An onnx-only version
                 has no joblib artifact, and empty sha256 and signature.
  P:versions     sorted set of version names by creation time
  P:history      list of activated versions, newest first (rollback walks it)
  P:changes      list of JSON records of every switch and route change, newest first: what,
                 when, by whom and why
the active key (default `scorer:model:active`) holding the active version's name, and the
route key (default `P:route`) holding the canary and shadow versions (see route.py).

Every change that reads before it writes runs in a WATCH transaction, so two operators (or an
operator and a guardrail) cannot interleave.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from typing import Any, TypeVar, cast

import orjson
import redis

from worker.errors import RegistryError
from worker.models.artifacts import EstimatorInfo, sha256_hex, signature_hex
from worker.models.compiled import Compiled, Runtime
from worker.models.entry import META_FIELDS, OnnxArtifact, RegistryEntry, decode_entry, encode_entry
from worker.models.probe import Probed
from worker.models.route import Canary, Route, check_percent, parse_route
from worker.settings import Settings

HISTORY_LIMIT = 100
T = TypeVar("T")
CHANGES_LIMIT = 1000


@dataclass(frozen=True)
class CanaryRequest:
    """A new version put on canary in the same transaction that publishes it (the
    retrainer's), only while `expect_active` is the active version (the one it was judged
    against) and the route holds no canary and is readable: it never replaces a person's
    canary, nor a hand edit."""

    percent: float
    expect_active: str
    by: str
    reason: str
    details: dict[str, object]


class Registry:
    """Thin, concrete wrapper over one Redis client; every call is a few round trips."""

    def __init__(
        self, client: redis.Redis, prefix: str, active_key: str, route_key: str = ""
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self.active_key = active_key
        self.route_key = route_key or f"{prefix}:route"

    @classmethod
    def for_settings(cls, client: redis.Redis, settings: Settings) -> Registry:
        return cls(client, settings.registry_prefix, settings.active_key, settings.route_key)

    def _version_key(self, version: str) -> str:
        return f"{self._prefix}:version:{version}"

    @property
    def _versions_key(self) -> str:
        return f"{self._prefix}:versions"

    @property
    def _history_key(self) -> str:
        return f"{self._prefix}:history"

    @property
    def _changes_key(self) -> str:
        return f"{self._prefix}:changes"

    def publish(
        self,
        data: bytes | None,
        version: str,
        info: EstimatorInfo,
        note: str = "",
        signing_key: str = "",
        *,
        reference: bytes | None = None,
        compiled: Compiled | None = None,
        runtime: Runtime = "joblib",
        training: dict[str, object] | None = None,
        canary: CanaryRequest | None = None,
        probed: Probed | None = None,
    ) -> RegistryEntry:
        """Store a new version: its joblib bytes (`data`), its ONNX conversion (`compiled`)
        or both, scored by `runtime`, with its reference profile for drift when given. An
        existing version is never overwritten. With `canary`, the version becomes the canary
        in the same transaction, or nothing is stored (RegistryError) if a canary runs."""
        if not version or any(c.isspace() for c in version):
            raise RegistryError(f"invalid version name {version!r}")
        stored = {"joblib": data is not None, "onnx": compiled is not None}
        if not stored[runtime]:
            raise RegistryError(f"version {version} would be scored by {runtime}, not stored")
        onnx = None
        if compiled is not None:
            from worker.models.compiled import runtime_versions

            onnx = OnnxArtifact.of(compiled, signing_key, runtime_versions())
        entry = RegistryEntry(
            version=version,
            sha256=sha256_hex(data) if data is not None else "",
            signature=signature_hex(data, signing_key) if signing_key and data else "",
            features=info.features,
            kind=info.kind,
            estimator_class=info.estimator_class,
            # from the installed distributions: importing scikit-learn for its version alone
            # would add about 2 s to every operator command
            sklearn_version=installed_version("scikit-learn"),
            joblib_version=installed_version("joblib"),
            created_at=time.time(),
            note=note,
            format="both" if all(stored.values()) else runtime,
            runtime=runtime,
            onnx=onnx,
            training=training,
        )
        if probed is not None:
            entry = probed.stamp(entry)
        if canary is not None:
            check_percent(canary.percent, force=False)
        fields = encode_entry(entry)
        if data is not None:
            fields["artifact"] = data
        if compiled is not None:
            fields["onnx_artifact"] = compiled.data
        if reference is not None:
            fields["reference"] = reference
        key = self._version_key(version)

        def store(pipe: redis.client.Pipeline) -> None:
            if pipe.exists(key):
                raise RegistryError(f"version {version} already exists; publish a new version name")
            route = Route()
            if canary is not None:
                route = self._canary_free_route(pipe, canary, version)
            pipe.multi()
            pipe.hset(key, mapping=fields)
            pipe.zadd(self._versions_key, {version: entry.created_at})
            if canary is not None:
                self._store_route(pipe, Route(Canary(version, canary.percent), route.shadow))
                self._record(
                    pipe,
                    "canary",
                    canary.by,
                    canary.reason,
                    version=version,
                    percent=canary.percent,
                    **canary.details,
                )

        self._redis.transaction(store, key, self.route_key, self.active_key)
        return entry

    def _canary_free_route(
        self, pipe: redis.client.Pipeline, canary: CanaryRequest, version: str
    ) -> Route:
        """The route a new canary joins, read inside the WATCH; RegistryError unless the
        request's conditions hold."""
        active = _text_or_none(pipe.get(self.active_key))
        if active != canary.expect_active:
            raise RegistryError(
                f"{canary.expect_active} is no longer the active version; {version} not stored"
            )
        route = parse_route(pipe.get(self.route_key))  # unreadable: RegistryError
        if route.canary is not None:
            raise RegistryError(f"{route.canary.version} is the canary; {version} not stored")
        return route

    def entry(self, version: str) -> RegistryEntry:
        values = self._redis.hmget(self._version_key(version), META_FIELDS)
        if values[0] is None:
            raise RegistryError(f"version {version} is not in the registry")
        return decode_entry(version, values)

    def artifact(self, version: str, runtime: Runtime = "joblib") -> bytes:
        """The bytes `runtime` loads: the joblib artifact or the ONNX model."""
        field = "artifact" if runtime == "joblib" else "onnx_artifact"
        data = self._redis.hget(self._version_key(version), field)
        if not isinstance(data, bytes):
            raise RegistryError(f"version {version} has no {runtime} artifact in the registry")
        return data

    def reference(self, version: str) -> bytes | None:
        """The version's reference profile (JSON), None if it was published without one."""
        data = self._redis.hget(self._version_key(version), "reference")
        return data if isinstance(data, bytes) else None

    def versions(self) -> list[RegistryEntry]:
        names = self._redis.zrange(self._versions_key, 0, -1)
        return [self.entry(_text(name)) for name in names]

    def active_version(self) -> str | None:
        value = self._redis.get(self.active_key)
        return _text(value) if value is not None else None

    def read_keys(self) -> tuple[str | None, bytes | str | None]:
        """The active version and the raw route, in one round trip."""
        active, route = self._redis.mget(self.active_key, self.route_key)
        return _text_or_none(active), route

    def history(self) -> list[str]:
        return [_text(v) for v in self._redis.lrange(self._history_key, 0, -1)]

    def activate(self, version: str, by: str = "", reason: str = "") -> RegistryEntry:
        """Point the active key at a known version and record the switch. A route that names
        the version loses it: the version serves everyone now."""
        entry = self.entry(version)

        def switch(pipe: redis.client.Pipeline) -> None:
            route = self._route_in(pipe).without(version)
            pipe.multi()
            self._point_active(pipe, version)
            self._store_route(pipe, route)
            self._record(pipe, "activate", by, reason, version=version)

        self._redis.transaction(switch, self.active_key, self.route_key)
        return entry

    def rollback(
        self,
        by: str = "",
        reason: str = "",
        *,
        expect_active: str | None = None,
        avoid: frozenset[str] = frozenset(),
        details: dict[str, object] | None = None,
    ) -> RegistryEntry:
        """Activate the most recent earlier version than the active one, dropping newer history.

        The history head is normally the active version; if the key was set by hand, the head
        is the last version activated through the registry, and rollback returns to it.
        With `expect_active` (a guardrail's decision), only while that version is active;
        versions in `avoid` (ones a guardrail took out) are passed over.
        """

        def swap(pipe: redis.client.Pipeline) -> str:
            active = pipe.get(self.active_key)
            if expect_active is not None and _text_or_none(active) != expect_active:
                raise RegistryError(f"{expect_active} is no longer the active version")
            history = pipe.lrange(self._history_key, 0, -1)
            skip = _rollback_index(history, active, avoid)
            target = _text(history[skip])
            route = self._route_in(pipe).without(target)
            pipe.multi()
            pipe.set(self.active_key, target)
            pipe.ltrim(self._history_key, skip, -1)
            self._store_route(pipe, route)
            record = details or {}
            if expect_active is not None:
                record = {"rolled_back": expect_active, **record}
            self._record(pipe, "rollback", by, reason, version=target, **record)
            return target

        return self.entry(self._watching(swap, self._history_key))

    def rollback_target(self, avoid: frozenset[str] = frozenset()) -> str:
        """The version `rollback` would activate now (a check before it; the rollback itself
        decides again inside its transaction)."""
        active = self._redis.get(self.active_key)
        history = self._redis.lrange(self._history_key, 0, -1)
        return _text(history[_rollback_index(history, active, avoid)])

    def route(self) -> Route:
        """The route as stored; RegistryError if a hand edit left it unreadable."""
        return parse_route(self._redis.get(self.route_key))

    def set_canary(
        self, version: str, percent: float, *, force: bool = False, by: str = "", reason: str = ""
    ) -> Route:
        """Send `percent` % of the traffic (by key) to a known version other than the active."""
        check_percent(percent, force=force)
        self.entry(version)

        def change(pipe: redis.client.Pipeline) -> Route:
            if _text_or_none(pipe.get(self.active_key)) == version:
                raise RegistryError(f"{version} is the active version; a canary must differ")
            route = self._route_in(pipe)
            if version in route.shadow:
                raise RegistryError(
                    f"{version} is a shadow version; take it out of the shadows first"
                )
            new = Route(Canary(version, float(percent)), route.shadow)
            pipe.multi()
            self._store_route(pipe, new)
            self._record(pipe, "canary", by, reason, version=version, percent=float(percent))
            return new

        return self._watching(change)

    def set_shadow(self, versions: list[str], *, by: str = "", reason: str = "") -> Route:
        """Score every event with these known versions too (none: no shadows)."""
        for version in versions:
            self.entry(version)

        def change(pipe: redis.client.Pipeline) -> Route:
            active = _text_or_none(pipe.get(self.active_key))
            route = self._route_in(pipe)
            for version in versions:
                if version == active:
                    raise RegistryError(f"{version} is the active version; it cannot be a shadow")
                if route.canary is not None and version == route.canary.version:
                    raise RegistryError(f"{version} is the canary; it cannot be a shadow too")
            new = Route(route.canary, tuple(dict.fromkeys(versions)))
            pipe.multi()
            self._store_route(pipe, new)
            self._record(pipe, "shadow", by, reason, shadow=list(new.shadow))
            return new

        return self._watching(change)

    def promote(
        self,
        *,
        by: str = "",
        reason: str = "",
        expect_canary: str | None = None,
        details: dict[str, object] | None = None,
    ) -> RegistryEntry:
        """The canary becomes the active version (recorded in the history, as `activate` does)
        and the route is cleared. With `expect_canary` (a guardrail's decision), only while
        that version is the canary."""

        def change(pipe: redis.client.Pipeline) -> str:
            route = self._route_in(pipe)
            if route.canary is None:
                raise RegistryError("no canary to promote")
            version = route.canary.version
            if expect_canary is not None and version != expect_canary:
                raise RegistryError(f"{expect_canary} is no longer the canary")
            pipe.multi()
            self._point_active(pipe, version)
            self._store_route(pipe, Route())
            self._record(pipe, "promote", by, reason, version=version, **(details or {}))
            return version

        return self.entry(self._watching(change))

    def abort(
        self,
        *,
        by: str = "",
        reason: str = "",
        expect_canary: str | None = None,
        details: dict[str, object] | None = None,
    ) -> Route:
        """Canary and shadows off; the route that was in place is returned. With
        `expect_canary` (a guardrail's decision), only that canary goes, only while it is the
        canary, and the shadows stay."""

        def change(pipe: redis.client.Pipeline) -> Route:
            route = self._route_in(pipe)
            if route.empty:
                raise RegistryError("nothing to abort: no canary or shadow version is set")
            if expect_canary is not None and (
                route.canary is None or route.canary.version != expect_canary
            ):
                raise RegistryError(f"{expect_canary} is no longer the canary")
            pipe.multi()
            self._store_route(pipe, Route(None, route.shadow) if expect_canary else Route())
            self._record(pipe, "abort", by, reason, aborted=route.as_json(), **(details or {}))
            return route

        return self._watching(change)

    def changes(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest change records first."""
        return [orjson.loads(raw) for raw in self._redis.lrange(self._changes_key, 0, limit - 1)]

    def _watching(self, change: Callable[[redis.client.Pipeline], T], *keys: str) -> T:
        """`change` in a transaction watching the active key, the route key and `keys`: it
        runs again if any of them changes before it commits. Its return value is returned."""
        result = self._redis.transaction(
            change,  # type: ignore[arg-type]  # redis-py types the callable as returning None
            self.active_key,
            self.route_key,
            *keys,
            value_from_callable=True,
        )
        return cast(T, result)

    def _route_in(self, pipe: redis.client.Pipeline) -> Route:
        """The stored route, read inside a WATCH; an unreadable hand edit counts as none, so an
        operator can always replace or clear it."""
        try:
            return parse_route(pipe.get(self.route_key))
        except RegistryError:
            return Route()

    def _point_active(self, pipe: redis.client.Pipeline, version: str) -> None:
        pipe.set(self.active_key, version)
        pipe.lpush(self._history_key, version)
        pipe.ltrim(self._history_key, 0, HISTORY_LIMIT - 1)

    def _store_route(self, pipe: redis.client.Pipeline, route: Route) -> None:
        if route.empty:
            pipe.delete(self.route_key)
        else:
            pipe.set(self.route_key, route.encode())

    def _record(
        self, pipe: redis.client.Pipeline, action: str, by: str, reason: str, **details: object
    ) -> None:
        record = {"action": action, "at": time.time(), "by": by, "reason": reason} | details
        pipe.lpush(self._changes_key, orjson.dumps(record))
        pipe.ltrim(self._changes_key, 0, CHANGES_LIMIT - 1)


def _rollback_index(history: Sequence[object], active: object, avoid: frozenset[str]) -> int:
    """Where in the history (newest first) a rollback lands: past the active version and the
    versions to avoid."""
    skip = 0
    while skip < len(history) and (history[skip] == active or _text(history[skip]) in avoid):
        skip += 1
    if skip == len(history):
        raise RegistryError("no earlier version to roll back to")
    return skip


def _text_or_none(value: object) -> str | None:
    return None if value is None else _text(value)


def _text(value: object) -> str:
    """Redis answers bytes (the client does not decode, so artifacts stay bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)
