"""Each documented value set rendered once per test process (helm template is the slow part)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy import tools

# The value sets the README documents: the chart's defaults, and deploy/helm/examples files
# layered as an operator would pass them with -f.
VALUE_SETS: dict[str, tuple[str, ...]] = {
    "default": (),
    "minimal": ("minimal.yaml",),
    "production": ("production.yaml",),
    "hpa": ("minimal.yaml", "hpa.yaml"),
}


@pytest.fixture(scope="session")
def manifests() -> dict[str, str]:
    rendered = {}
    for name, files in VALUE_SETS.items():
        done = tools.render(*files)
        assert done.returncode == 0, f"{name}: {done.stderr}"
        rendered[name] = done.stdout
    return rendered


@pytest.fixture(scope="session")
def objects(manifests: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    return {name: tools.documents(text) for name, text in manifests.items()}


@pytest.fixture(scope="session")
def schema_dir(
    tmp_path_factory: pytest.TempPathFactory, objects: dict[str, list[dict[str, Any]]]
) -> Path:
    """kubeconform's schema folder, one subfolder per Kubernetes version: every kind the
    value sets render (from kubernetes-validate) and every CRD version (from the modules)."""
    root = tmp_path_factory.mktemp("schemas")
    crds: dict[str, dict[str, Any]] = {}
    for path in tools.crd_files():
        for crd in yaml.safe_load_all(path.read_text()):
            crds |= tools.crd_schemas(crd)
    kinds = {
        tools.schema_file_name(obj["kind"], obj["apiVersion"])
        for rendered in objects.values()
        for obj in rendered
    }
    for version in tools.kubernetes_versions():
        folder = root / f"v{version}"
        folder.mkdir()
        for name, schema in crds.items():
            (folder / name).write_text(json.dumps(schema))
        for name in kinds - set(crds):
            found = tools.kubernetes_schema(version, name)
            if found is not None:  # else kubeconform reports the missing schema
                (folder / name).write_text(json.dumps(found))
    return root
