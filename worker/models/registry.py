"""The model registry in Redis: versions with their artifacts, the active key, the switch history.

Layout under the prefix P (default `scorer:model`):
  P:version:<V>  hash: artifact bytes, sha256, signature, features (JSON), kind, estimator_class,
                 sklearn_version, joblib_version, created_at, note
  P:versions     sorted set of version names by creation time
  P:history      list of activated versions, newest first (rollback walks it)
and the active key (default `scorer:model:active`) holding the active version's name.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import joblib
import orjson
import redis
import sklearn
from redis.typing import EncodableT, FieldT

from worker.errors import RegistryError
from worker.models.artifacts import EstimatorInfo, sha256_hex, signature_hex
from worker.models.scoring import ModelKind

HISTORY_LIMIT = 100


@dataclass(frozen=True)
class RegistryEntry:
    version: str
    sha256: str
    signature: str
    features: tuple[str, ...]
    kind: ModelKind
    estimator_class: str
    sklearn_version: str
    joblib_version: str
    created_at: float
    note: str

    def summary(self) -> dict[str, object]:
        """JSON-ready metadata, without the signature."""
        data = asdict(self)
        data["features"] = list(self.features)
        del data["signature"]
        return data


_META_FIELDS = [
    "sha256",
    "signature",
    "features",
    "kind",
    "estimator_class",
    "sklearn_version",
    "joblib_version",
    "created_at",
    "note",
]


class Registry:
    """Thin, concrete wrapper over one Redis client; every call is a few round trips."""

    def __init__(self, client: redis.Redis, prefix: str, active_key: str) -> None:
        self._redis = client
        self._prefix = prefix
        self.active_key = active_key

    def _version_key(self, version: str) -> str:
        return f"{self._prefix}:version:{version}"

    @property
    def _versions_key(self) -> str:
        return f"{self._prefix}:versions"

    @property
    def _history_key(self) -> str:
        return f"{self._prefix}:history"

    def publish(
        self, data: bytes, version: str, info: EstimatorInfo, note: str = "", signing_key: str = ""
    ) -> RegistryEntry:
        """Store a new version; an existing version is never overwritten."""
        if not version or any(c.isspace() for c in version):
            raise RegistryError(f"invalid version name {version!r}")
        entry = RegistryEntry(
            version=version,
            sha256=sha256_hex(data),
            signature=signature_hex(data, signing_key) if signing_key else "",
            features=info.features,
            kind=info.kind,
            estimator_class=info.estimator_class,
            sklearn_version=sklearn.__version__,
            joblib_version=joblib.__version__,
            created_at=time.time(),
            note=note,
        )
        fields = _encode_meta(entry) | {"artifact": data}
        key = self._version_key(version)

        def store(pipe: redis.client.Pipeline) -> None:
            if pipe.exists(key):
                raise RegistryError(f"version {version} already exists; publish a new version name")
            pipe.multi()
            pipe.hset(key, mapping=fields)
            pipe.zadd(self._versions_key, {version: entry.created_at})

        self._redis.transaction(store, key)
        return entry

    def entry(self, version: str) -> RegistryEntry:
        values = self._redis.hmget(self._version_key(version), _META_FIELDS)
        if values[0] is None:
            raise RegistryError(f"version {version} is not in the registry")
        return _decode_meta(version, values)

    def artifact(self, version: str) -> bytes:
        data = self._redis.hget(self._version_key(version), "artifact")
        if not isinstance(data, bytes):
            raise RegistryError(f"version {version} has no artifact in the registry")
        return data

    def versions(self) -> list[RegistryEntry]:
        names = self._redis.zrange(self._versions_key, 0, -1)
        return [self.entry(_text(name)) for name in names]

    def active_version(self) -> str | None:
        value = self._redis.get(self.active_key)
        return _text(value) if value is not None else None

    def history(self) -> list[str]:
        return [_text(v) for v in self._redis.lrange(self._history_key, 0, -1)]

    def activate(self, version: str) -> RegistryEntry:
        """Point the active key at a known version and record the switch."""
        entry = self.entry(version)
        with self._redis.pipeline() as pipe:
            pipe.set(self.active_key, version)
            pipe.lpush(self._history_key, version)
            pipe.ltrim(self._history_key, 0, HISTORY_LIMIT - 1)
            pipe.execute()
        return entry

    def rollback(self) -> RegistryEntry:
        """Activate the most recent earlier version than the active one, dropping newer history.

        The history head is normally the active version; if the key was set by hand, the head
        is the last version activated through the registry, and rollback returns to it.
        """

        def swap(pipe: redis.client.Pipeline) -> str:
            active = pipe.get(self.active_key)
            history = pipe.lrange(self._history_key, 0, -1)
            skip = 0
            while skip < len(history) and history[skip] == active:
                skip += 1
            if skip == len(history):
                raise RegistryError("no earlier version to roll back to")
            target = history[skip]
            pipe.multi()
            pipe.set(self.active_key, target)
            pipe.ltrim(self._history_key, skip, -1)
            return _text(target)

        version = self._redis.transaction(
            swap,  # type: ignore[arg-type]  # redis-py types the callable as returning None
            self.active_key,
            self._history_key,
            value_from_callable=True,
        )
        return self.entry(_text(version))


def _encode_meta(entry: RegistryEntry) -> dict[FieldT, EncodableT]:
    return {
        "sha256": entry.sha256,
        "signature": entry.signature,
        "features": orjson.dumps(list(entry.features)),
        "kind": entry.kind,
        "estimator_class": entry.estimator_class,
        "sklearn_version": entry.sklearn_version,
        "joblib_version": entry.joblib_version,
        "created_at": repr(entry.created_at),
        "note": entry.note,
    }


def _text(value: object) -> str:
    """Redis answers bytes (the client does not decode, so artifacts stay bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode_meta(version: str, values: list[bytes | str | None]) -> RegistryEntry:
    text = {
        k: (_text(v) if v is not None else "") for k, v in zip(_META_FIELDS, values, strict=True)
    }
    try:
        features = tuple(orjson.loads(text["features"] or "[]"))
        kind: ModelKind = "classifier" if text["kind"] == "classifier" else "regressor"
        return RegistryEntry(
            version=version,
            sha256=text["sha256"],
            signature=text["signature"],
            features=features,
            kind=kind,
            estimator_class=text["estimator_class"],
            sklearn_version=text["sklearn_version"],
            joblib_version=text["joblib_version"],
            created_at=float(text["created_at"] or 0),
            note=text["note"],
        )
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise RegistryError(f"registry entry for {version} is corrupt: {exc}") from None
