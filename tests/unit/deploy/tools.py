"""The chart checks' tools and schemas: where `make deploy-tools` put them, and the schema
conversions kubeconform needs (nothing is fetched here: no network at test time).

Kubernetes schemas come from the kubernetes-validate package (one file per kind, whose
references point into a shared `_definitions.json`); kubeconform wants each kind's schema
whole, so `kubernetes_schema` inlines the definitions a kind reaches. CRD schemas come from
the KEDA and Prometheus Operator Go modules; `crd_schemas` turns a CRD's openAPIV3Schema into
a JSON schema as kubeconform's openapi2jsonschema does in strict mode (an object with listed
properties allows no others, unless it preserves unknown fields).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "deploy" / "helm" / "scorer"
EXAMPLES = REPO / "deploy" / "helm" / "examples"
TOOLS_DIR = Path(
    os.environ.get("DEPLOY_TOOLS", Path.home() / ".cache" / "scorer" / "deploy")
).expanduser()
INSTALL_STEP = "`make deploy-tools` builds and copies it into ~/.cache/scorer/deploy"
_DEFINITIONS_REF = "/api/_definitions.json#/$defs/"


def versions() -> dict[str, str]:
    """deploy/tools.env: the pinned versions, shared with the Makefile."""
    pairs = {}
    for line in (REPO / "deploy" / "tools.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def kubernetes_versions() -> list[str]:
    return versions()["KUBERNETES_VERSIONS"].split()


def missing(what: str) -> None:
    """Fail when the tools must be here (make test, CI); skip on a bare developer machine."""
    reason = f"{what} is missing: {INSTALL_STEP}"
    if os.environ.get("SCORER_REQUIRE_DEPLOY_TOOLS") == "1" or os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def tool_file(name: str, version_key: str, filename: str) -> Path:
    path = TOOLS_DIR / f"{name}-{versions()[version_key]}" / filename
    if not path.is_file():
        missing(f"{name} {versions()[version_key]} ({path})")
    return path


def helm() -> Path:
    return tool_file("helm", "HELM_VERSION", "helm")


def kubeconform() -> Path:
    return tool_file("kubeconform", "KUBECONFORM_VERSION", "kubeconform")


def compose_schema() -> dict[str, Any]:
    path = tool_file("compose-go", "COMPOSE_GO_VERSION", "compose-spec.json")
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, check=False
    )


def render(*value_files: str, sets: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart with deploy/helm/examples value files, as an operator would."""
    args: list[str | Path] = [helm(), "template", "scorer", CHART, "--namespace", "scoring"]
    args += ["--kube-version", kubernetes_versions()[-1]]
    for name in value_files:
        args += ["--values", EXAMPLES / name]
    for pair in sets:
        args += ["--set", pair]
    return run(*args)


def documents(manifest: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def schema_file_name(kind: str, api_version: str) -> str:
    """kubeconform's `{{ .ResourceKind }}{{ .KindSuffix }}.json` for an object."""
    group, _, version = api_version.rpartition("/")
    suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
    return f"{kind.lower()}{suffix.lower()}.json"


def kubernetes_schema(k8s_version: str, file_name: str) -> dict[str, Any] | None:
    """One kind's strict schema from kubernetes-validate, its definitions inlined; None when
    the package has no such kind (a CRD, or an API that version lacks)."""
    if importlib.util.find_spec("kubernetes_validate") is None:
        missing("the kubernetes-validate package (the dev extra: make install)")
    base = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    folder = base / f"v{k8s_version}-local-strict"
    if not folder.joinpath(file_name).is_file():
        return None
    schema: dict[str, Any] = json.loads(folder.joinpath(file_name).read_text())
    definitions = json.loads(folder.joinpath("_definitions.json").read_text())["$defs"]
    schema.pop("$id", None)
    schema["$defs"] = {name: definitions[name] for name in _reached(schema, definitions)}
    relinked: dict[str, Any] = _relinked(schema)
    return relinked


def _reached(schema: dict[str, Any], definitions: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    todo = list(_refs(schema))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _refs(definitions[name])
    return seen


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):  # "/api/_definitions.json#/$defs/X", or "#/$defs/X" inside it
            yield ref.rpartition("/$defs/")[2]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _relinked(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                value.replace(_DEFINITIONS_REF, "#/$defs/")
                if key == "$ref" and isinstance(value, str)
                else _relinked(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_relinked(value) for value in node]
    return node


def crd_files() -> list[Path]:
    keda = tool_file("keda", "KEDA_VERSION", ".copied").parent
    operator = tool_file("prometheus-operator", "PROMETHEUS_OPERATOR_VERSION", ".copied").parent
    return sorted(keda.glob("*.yaml")) + sorted(operator.glob("*.yaml"))


def crd_schemas(crd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A CRD's served versions as kubeconform schema files: {file name: JSON schema}."""
    kind = crd["spec"]["names"]["kind"]
    group = crd["spec"]["group"]
    return {
        schema_file_name(kind, f"{group}/{version['name']}"): _strict(
            version["schema"]["openAPIV3Schema"]
        )
        for version in crd["spec"]["versions"]
        if version.get("served", True)
    }


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(value) for value in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _strict(value) for key, value in node.items()}
    if (
        "properties" in converted
        and "additionalProperties" not in converted
        and not converted.get("x-kubernetes-preserve-unknown-fields")
    ):
        converted["additionalProperties"] = False
    return converted
