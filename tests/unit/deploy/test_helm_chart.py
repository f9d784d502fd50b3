"""The Helm chart renders, lints clean and validates against the Kubernetes API and the CRD
schemas for every documented value set (no cluster here: everything short of one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.deploy import tools
from tests.unit.deploy.conftest import VALUE_SETS

# What each documented value set renders: README "Deploying on Kubernetes" lists the same.
EXPECTED_OBJECTS = {
    "default": [
        "ConfigMap/scorer-config",
        "Deployment/scorer-monitor",
        "Deployment/scorer-retrainer",
        "Deployment/scorer-worker",
        "PodDisruptionBudget/scorer-worker",
        "Service/scorer-monitor",
        "Service/scorer-retrainer",
        "Service/scorer-worker",
        "ServiceAccount/scorer",
    ],
    "minimal": [
        "ConfigMap/scorer-config",
        "Deployment/scorer-monitor",
        "Deployment/scorer-worker",
        "PodDisruptionBudget/scorer-worker",
        "Service/scorer-monitor",
        "Service/scorer-worker",
        "ServiceAccount/scorer",
    ],
    "production": [
        "ConfigMap/scorer-config",
        "ConfigMap/scorer-dashboard",
        "Deployment/scorer-monitor",
        "Deployment/scorer-retrainer",
        "PodDisruptionBudget/scorer-monitor",
        "PodDisruptionBudget/scorer-worker",
        "ScaledObject/scorer-worker",
        "Service/scorer-monitor",
        "Service/scorer-retrainer",
        "Service/scorer-worker",
        "ServiceAccount/scorer",
        "ServiceMonitor/scorer",
        "StatefulSet/scorer-worker",
        "TriggerAuthentication/scorer-worker-kafka",
    ],
    "hpa": [
        "ConfigMap/scorer-config",
        "Deployment/scorer-monitor",
        "Deployment/scorer-worker",
        "HorizontalPodAutoscaler/scorer-worker",
        "PodDisruptionBudget/scorer-worker",
        "Service/scorer-monitor",
        "Service/scorer-worker",
        "ServiceAccount/scorer",
        "ServiceMonitor/scorer",
    ],
}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_each_value_set_renders_the_documented_objects(
    value_set: str, objects: dict[str, list[dict[str, Any]]]
) -> None:
    rendered = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects[value_set])
    assert rendered == EXPECTED_OBJECTS[value_set]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_is_clean(value_set: str) -> None:
    args: list[str | Path] = [tools.helm(), "lint", "--strict", tools.CHART]
    args += ["--kube-version", tools.kubernetes_versions()[-1]]
    for name in VALUE_SETS[value_set]:
        args += ["--values", tools.EXAMPLES / name]
    done = tools.run(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout, done.stdout


@pytest.mark.parametrize("k8s_version", tools.kubernetes_versions())
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_object_validates_against_the_api_and_crd_schemas(
    value_set: str,
    k8s_version: str,
    manifests: dict[str, str],
    schema_dir: Path,
    tmp_path: Path,
) -> None:
    """kubeconform -strict: unknown fields and duplicate keys are errors, and so is an object
    with no schema (nothing is skipped)."""
    manifest = tmp_path / f"{value_set}.yaml"
    manifest.write_text(manifests[value_set])
    location = f"{schema_dir}/{{{{ .NormalizedKubernetesVersion }}}}/"
    location += "{{ .ResourceKind }}{{ .KindSuffix }}.json"
    done = tools.run(
        tools.kubeconform(),
        "-strict",
        "-summary",
        "-output",
        "json",
        "-kubernetes-version",
        k8s_version,
        "-schema-location",
        location,
        manifest,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)["summary"]
    assert summary["valid"] == len(EXPECTED_OBJECTS[value_set]), summary
    assert summary["invalid"] == summary["errors"] == summary["skipped"] == 0, summary


def test_kubeconform_rejects_what_the_api_would(schema_dir: Path, tmp_path: Path) -> None:
    """The converted schemas bite: an unknown field in a pod spec and in a ScaledObject."""
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndatta: {}\n---\n"
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: b}\n"
        "spec: {scaleTargetRef: {name: w}, triggers: [], maxReplicas: 3}\n"
    )
    location = f"{schema_dir}/v{tools.kubernetes_versions()[-1]}/"
    location += "{{ .ResourceKind }}{{ .KindSuffix }}.json"
    done = tools.run(tools.kubeconform(), "-strict", "-schema-location", location, manifest)
    assert done.returncode == 1
    assert "datta" in done.stdout and "maxReplicas" in done.stdout, done.stdout


@pytest.mark.parametrize(
    ("sets", "reason"),
    [
        (("worker.replicas=5",), "worker.replicas (5) exceeds inputTopicPartitions (4)"),
        (("autoscaling.mode=keda", "autoscaling.maxReplicas=6"), "autoscaling.maxReplicas (6)"),
        (("terminationGracePeriodSeconds=60",), "must exceed 2 x delivery_timeout_s"),
        (("worker.settings.delivery_timeout_s=40",), "must exceed 2 x delivery_timeout_s"),
        (("autoscaling.mode=vpa",), "autoscaling.mode must be none, keda or hpa"),
        (("secretFiles.kafka_sasl_username.secretName=s",), "not a secret or file setting"),
        (("settings.allow_pickle=false",), "the retrainer clones the active estimator"),
        (("retrainer.settings.allow_pickle=false",), "so it needs allow_pickle true"),
        (("retrainer.settings.allow_pickle=No",), "so it needs allow_pickle true"),
        (("retrainer.settings.allow_pickle=0",), "so it needs allow_pickle true"),
        (
            ("worker.settings.allow_pickle=false",),
            "every joblib-only candidate would be refused",
        ),
        (
            ("extraEnv[0].name=SCORER_ALLOW_PICKLE", "extraEnv[0].value=false"),
            "extraEnv SCORER_ALLOW_PICKLE would override",
        ),
    ],
)
def test_the_chart_refuses_values_that_cannot_work(sets: tuple[str, ...], reason: str) -> None:
    done = tools.render(sets=sets)
    assert done.returncode != 0
    assert reason in done.stderr, done.stderr


def test_the_dashboard_shipped_in_the_chart_is_the_grafana_one(
    objects: dict[str, list[dict[str, Any]]],
) -> None:
    source = (tools.REPO / "deploy" / "grafana" / "dashboards" / "scorer.json").read_text()
    assert (tools.CHART / "dashboards" / "scorer.json").read_text() == source
    [dashboard] = [o for o in objects["production"] if o["metadata"]["name"].endswith("dashboard")]
    assert json.loads(dashboard["data"]["scorer.json"]) == json.loads(source)
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
