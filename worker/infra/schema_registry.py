"""A client of a Confluent-compatible schema registry API (Confluent's own, Apicurio's
`/apis/ccompat/v7`, Karapace): a schema by its id (what a reader of the wire format needs),
and registering one under a subject. Plain HTTP through the standard library: three calls do
not need a client package. A registry that cannot be reached (or answers 5xx) raises
ServiceUnavailable, an outage; a 4xx is an answer.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from worker.errors import ConfigError, ScorerError, ServiceUnavailable

SchemaType = Literal["AVRO", "PROTOBUF", "JSON"]
_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_TIMEOUT_S = 10.0
_SCHEMA_NOT_FOUND = 40403
_TRY_AGAIN = frozenset({408, 429})  # a timeout, a rate limit: the registry is there, busy


class SchemaRefused(ConfigError):
    """The registry refused a request: a schema not valid, or not compatible with the
    subject's; `error_code` is the registry's own (40403: no such schema), 0 if none."""

    error_code = 0


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
        """The schema of this id; UnknownSchema only where the registry says it holds none
        (404 with error code 40403); any other refusal (credentials, a URL that is not the
        API, rate limits) is ServiceUnavailable: the batch waits and the alert says why,
        rather than every record being dead-lettered."""
        try:
            answer = self._call("GET", f"/schemas/ids/{schema_id}")
        except SchemaRefused as refused:
            if refused.error_code == _SCHEMA_NOT_FOUND:
                raise UnknownSchema(str(refused)) from None
            raise ServiceUnavailable(str(refused)) from None
        try:
            kind = str(answer.get("schemaType") or "AVRO")
            return RegisteredSchema(schema_id, kind, str(answer["schema"]))  # type: ignore[arg-type]
        except (AttributeError, KeyError):
            raise ServiceUnavailable(
                f"schema registry {self.url}: schema {schema_id} answered without a schema"
            ) from None

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
            message, code = _message(exc)
            if exc.code >= 500 or exc.code in _TRY_AGAIN:
                raise ServiceUnavailable(f"schema registry {self.url}: {message}") from None
            refused = SchemaRefused(f"schema registry {self.url} refused {path}: {message}")
            refused.error_code = code
            raise refused from None
        except orjson.JSONDecodeError:
            raise ServiceUnavailable(
                f"schema registry {self.url}: {path} answered with no JSON (is the URL the "
                "registry's API?)"
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
            raise ServiceUnavailable(f"schema registry {self.url}: {reason}") from None


def _message(error: urllib.error.HTTPError) -> tuple[str, int]:
    """The registry's own `message` and `error_code` (Confluent's error body), else the HTTP
    status and 0."""
    try:
        body = orjson.loads(error.read())
        return str(body["message"]), int(body.get("error_code") or 0)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, OSError):
        return f"HTTP {error.code} {error.reason}", 0
