"""The traffic policy around the active version: a canary on a slice of traffic, shadows on all.

Stored as JSON in the route key (default `scorer:model:route`), for example
`{"canary": {"version": "v3", "percent": 10}, "shadow": ["v4"]}`; absent or `{}` means the
primary alone. Which events go to the canary: worker/stream/arms.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import orjson

from worker.errors import ConfigError, RegistryError

BUCKETS = 10_000
MAX_PERCENT = 50.0  # above this, a canary is no longer a slice: `--force` says it is meant


@dataclass(frozen=True)
class Canary:
    version: str
    percent: float

    @property
    def buckets(self) -> int:
        """Buckets below this one go to the canary."""
        return round(self.percent * BUCKETS / 100)


@dataclass(frozen=True)
class Route:
    canary: Canary | None = None
    shadow: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self.canary is None and not self.shadow

    @property
    def versions(self) -> tuple[str, ...]:
        """Every version the route names, canary first."""
        return ((self.canary.version,) if self.canary else ()) + self.shadow

    def without(self, version: str) -> Route:
        """The route once `version` serves everyone (it was activated)."""
        canary = self.canary if self.canary and self.canary.version != version else None
        return Route(canary, tuple(v for v in self.shadow if v != version))

    def as_json(self) -> dict[str, object]:
        data: dict[str, object] = {}
        if self.canary is not None:
            data["canary"] = {"version": self.canary.version, "percent": self.canary.percent}
        if self.shadow:
            data["shadow"] = list(self.shadow)
        return data

    def encode(self) -> bytes:
        return orjson.dumps(self.as_json())


def parse_route(raw: bytes | str | None) -> Route:
    """The route key's value, checked; RegistryError names what is wrong with a hand edit."""
    if raw is None or not raw.strip():
        return Route()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RegistryError(f"route is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or set(data) - {"canary", "shadow"}:
        raise RegistryError(
            f'route must be an object with "canary" and/or "shadow", got {_short(raw)}'
        )
    canary = _parse_canary(data.get("canary"))
    shadow = data.get("shadow") or []
    if not isinstance(shadow, list) or not all(isinstance(v, str) and v for v in shadow):
        raise RegistryError(f"route shadow must be a list of version names, got {shadow!r}")
    route = Route(canary, tuple(dict.fromkeys(shadow)))
    if canary is not None and canary.version in route.shadow:
        raise RegistryError(f"route names {canary.version} as both canary and shadow")
    return route


def _parse_canary(canary: object) -> Canary | None:
    if canary is None:
        return None
    if not isinstance(canary, dict) or set(canary) != {"version", "percent"}:
        raise RegistryError(f'route canary must be {{"version": V, "percent": P}}, got {canary!r}')
    version, percent = canary["version"], canary["percent"]
    if not isinstance(version, str) or not version:
        raise RegistryError(f"route canary version must be a name, got {version!r}")
    try:
        check_percent(percent, force=True)
    except ConfigError as exc:
        raise RegistryError(f"route {exc}") from None
    return Canary(version, float(percent))


def check_percent(percent: object, *, force: bool) -> None:
    """0 < P <= 50, or <= 100 when forced; ConfigError (a bad argument) if not."""
    ceiling = 100.0 if force else MAX_PERCENT
    if (
        isinstance(percent, bool)
        or not isinstance(percent, int | float)
        or not math.isfinite(percent)
        or not 0 < percent <= ceiling
    ):
        hint = "" if force else " (above 50 needs --force)"
        raise ConfigError(f"canary percent must be in (0, {ceiling:g}]{hint}, got {percent!r}")


def _short(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text if len(text) <= 80 else text[:77] + "..."
