"""A client of a Confluent-compatible schema registry API (Confluent's own, Apicurio's
`/apis/ccompat/v7`, Karapace): a schema by its id (what a reader of the wire format needs),
and registering one under a subject. Plain HTTP through the standard library: three calls do
not need a client package. A registry that cannot be reached (or answers 5xx) raises
ServiceUnavailable, an outage; a 4xx is an answer.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from worker.errors import ConfigError, ScorerError, ServiceUnavailable

SchemaType = Literal["AVRO", "PROTOBUF", "JSON"]
_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_TIMEOUT_S = 10.0


class SchemaRefused(ConfigError):
    """The registry refused a schema: not valid, or not compatible with the subject's."""


class UnknownSchema(ScorerError):
    """The registry holds no schema of this id (404)."""


@dataclass(frozen=True)
class RegisteredSchema:
    schema_id: int
    schema_type: SchemaType
    text: str


class SchemaRegistry:
    def __init__(self, url: str, timeout_s: float = _TIMEOUT_S) -> None:
        if not url:
            raise ConfigError("setting schema_registry_url is empty: a registry is needed")
        self.url = url.rstrip("/")
        self._timeout_s = timeout_s

    def register(self, subject: str, schema: str, schema_type: SchemaType = "AVRO") -> int:
        """The id of `schema` under `subject`, registered if it is new (the registry returns
        the existing id for a schema it already holds)."""
        body: dict[str, object] = {"schema": schema}
        if schema_type != "AVRO":  # the API's default, which older registries require absent
            body["schemaType"] = schema_type
        answer = self._call("POST", f"/subjects/{subject}/versions", body)
        return int(answer["id"])

    def schema(self, schema_id: int) -> RegisteredSchema:
        """The schema of this id; UnknownSchema if the registry holds none."""
        try:
            answer = self._call("GET", f"/schemas/ids/{schema_id}")
        except SchemaRefused as refused:
            raise UnknownSchema(str(refused)) from None
        kind = str(answer.get("schemaType") or "AVRO")
        return RegisteredSchema(schema_id, kind, str(answer["schema"]))  # type: ignore[arg-type]

    def subjects(self) -> list[str]:
        answer = self._call("GET", "/subjects")
        return [str(subject) for subject in answer]

    def _call(self, method: str, path: str, body: object = None) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=None if body is None else orjson.dumps(body),
            method=method,
            headers={"Content-Type": _CONTENT_TYPE, "Accept": _CONTENT_TYPE},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                return orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            message = _message(exc)
            if exc.code >= 500:
                raise ServiceUnavailable(f"schema registry {self.url}: {message}") from None
            raise SchemaRefused(f"schema registry {self.url} refused {path}: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServiceUnavailable(f"schema registry {self.url}: {reason}") from None


def _message(error: urllib.error.HTTPError) -> str:
    """The registry's own `message` (Confluent's error body), else the HTTP status."""
    try:
        return str(orjson.loads(error.read())["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError, OSError):
        return f"HTTP {error.code} {error.reason}"
