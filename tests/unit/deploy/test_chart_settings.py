"""The chart agrees with the code: every setting it sets exists and has the right type, every
port is metrics_port, and the worker's stop and group settings are honoured."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy import tools
from tests.unit.deploy.conftest import VALUE_SETS
from worker.ops.metrics import WorkerMetrics
from worker.settings import (
    CONFIG_ENV,
    SECRET_SETTINGS,
    Settings,
    coerce,
    env_name,
    load_settings,
    setting_names,
)

Objects = dict[str, list[dict[str, Any]]]
# The settings that take a file's path (TLS material), mounted from Secrets like the secrets.
FILE_SETTINGS = {"kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", "redis_ssl_ca_file"}
COMMANDS = {"worker": "run", "monitor": "monitor", "retrainer": "retrain"}


def workloads(rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in rendered if o["kind"] in ("Deployment", "StatefulSet")]


def component(obj: dict[str, Any]) -> str:
    name: str = obj["metadata"]["labels"]["app.kubernetes.io/component"]
    return name


def component_settings(rendered: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [config] = [o for o in rendered if o["metadata"]["name"] == "scorer-config"]
    settings: dict[str, Any] = tomllib.loads(config["data"][f"{name}.toml"])
    return settings


def container(workload: dict[str, Any]) -> dict[str, Any]:
    only: dict[str, Any]
    [only] = workload["spec"]["template"]["spec"]["containers"]
    return only


def environment(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container(workload)["env"]}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_setting_in_the_config_maps_exists_with_the_right_type(
    value_set: str, objects: Objects
) -> None:
    for name in COMMANDS:
        settings = component_settings(objects[value_set], name)
        assert set(settings) <= set(setting_names()), set(settings) - set(setting_names())
        for setting, value in settings.items():
            coerce(setting, value)  # raises ConfigError on a wrong type or choice


@pytest.mark.parametrize("value_set", ["default", "minimal", "hpa"])
def test_the_rendered_worker_toml_loads_as_the_processes_load_it(
    value_set: str, objects: Objects, tmp_path: Path
) -> None:
    """The whole validation a process runs at start (production's TLS files live only in
    its pods, so that set is checked setting by setting above)."""
    [config] = [o for o in objects[value_set] if o["metadata"]["name"] == "scorer-config"]
    for name in COMMANDS:
        path = tmp_path / f"{name}.toml"
        path.write_text(config["data"][f"{name}.toml"])
        load_settings({}, path)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_scorer_variable_the_pods_get_is_a_setting_or_a_secret_file(
    value_set: str, objects: Objects
) -> None:
    known = {env_name(n) for n in setting_names()} | {CONFIG_ENV}
    known |= {env_name(n) + "_FILE" for n in SECRET_SETTINGS}
    for workload in workloads(objects[value_set]):
        variables = set(environment(workload))
        assert CONFIG_ENV in variables
        assert {v for v in variables if v.startswith("SCORER_")} <= known, variables - known


def test_the_chart_mounts_exactly_the_secret_and_file_settings_the_code_reads() -> None:
    values = yaml.safe_load((tools.CHART / "values.yaml").read_text())
    assert set(values["secretFiles"]) == SECRET_SETTINGS | FILE_SETTINGS
    assert set(setting_names()) >= FILE_SETTINGS
    helpers = (tools.CHART / "templates" / "_helpers.tpl").read_text()
    assert " ".join(sorted(SECRET_SETTINGS)) + "\n" in helpers
    assert " ".join(sorted(FILE_SETTINGS)) + "\n" in helpers


def test_secrets_reach_the_processes_as_files_never_as_values(objects: Objects) -> None:
    production = objects["production"]
    for workload in workloads(production):
        env = environment(workload)
        mounts = {m["mountPath"] for m in container(workload)["volumeMounts"]}
        for name in SECRET_SETTINGS:
            path = env[env_name(name) + "_FILE"]["value"]
            assert any(path.startswith(mount + "/") for mount in mounts), path
            assert env_name(name) not in env
        settings = component_settings(production, component(workload))
        assert not set(settings) & SECRET_SETTINGS
        for name in FILE_SETTINGS:
            assert any(settings[name].startswith(mount + "/") for mount in mounts)
    [config] = [o for o in production if o["metadata"]["name"] == "scorer-config"]
    assert "password" not in str(config["data"]).lower()


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_port_is_the_processes_metrics_port(value_set: str, objects: Objects) -> None:
    rendered = objects[value_set]
    services = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "Service"}
    for workload in workloads(rendered):
        name = component(workload)
        port = component_settings(rendered, name).get("metrics_port", Settings().metrics_port)
        spec = container(workload)
        assert spec["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert spec["args"] == [COMMANDS[name]]
        assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert spec["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        [service_port] = services[workload["metadata"]["name"]]["spec"]["ports"]
        assert (service_port["port"], service_port["targetPort"]) == (port, "http")
    for monitor in (o for o in rendered if o["kind"] == "ServiceMonitor"):
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"]


def test_a_changed_metrics_port_moves_every_port() -> None:
    done = tools.render(sets=("settings.metrics_port=9500",))
    assert done.returncode == 0, done.stderr
    rendered = tools.documents(done.stdout)
    ports = {c["containerPort"] for w in workloads(rendered) for c in container(w)["ports"]}
    ports |= {p["port"] for o in rendered if o["kind"] == "Service" for p in o["spec"]["ports"]}
    assert ports == {9500}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pods_stop_after_their_drain_and_run_non_root_read_only(
    value_set: str, objects: Objects
) -> None:
    for workload in workloads(objects[value_set]):
        pod = workload["spec"]["template"]["spec"]
        settings = component_settings(objects[value_set], component(workload))
        drain_s = 2 * settings.get("delivery_timeout_s", Settings().delivery_timeout_s)
        assert pod["terminationGracePeriodSeconds"] > drain_s
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        security = container(workload)["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert {"name": "tmp", "mountPath": "/tmp"} in container(workload)["volumeMounts"]
        resources = container(workload)["resources"]
        assert set(resources) == {"requests", "limits"}


def test_static_membership_names_each_member_after_its_stateful_pod(objects: Objects) -> None:
    [worker] = [w for w in workloads(objects["production"]) if component(w) == "worker"]
    assert worker["kind"] == "StatefulSet"
    env = environment(worker)
    instance = env[env_name("group_instance_id")]
    assert instance["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    settings = component_settings(objects["production"], "worker")
    assert settings["partition_assignment"] == "cooperative-sticky"
    assert settings["session_timeout_ms"] > 60_000  # above a pod's restart time
    for value_set in ("default", "minimal", "hpa"):
        for workload in workloads(objects[value_set]):
            assert env_name("group_instance_id") not in environment(workload)


def test_the_keda_trigger_reads_the_fleets_group_and_topic(objects: Objects) -> None:
    production = objects["production"]
    [scaled] = [o for o in production if o["kind"] == "ScaledObject"]
    settings = component_settings(production, "worker")
    [trigger] = scaled["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert meta["consumerGroup"] == settings["group_id"]
    assert meta["topic"] == Settings().input_topic
    assert meta["bootstrapServers"] == settings["kafka_bootstrap"]
    assert (meta["tls"], meta["sasl"]) == ("enable", "scram_sha512")
    assert meta["allowIdleConsumers"] == "false"  # never more workers than partitions
    values = yaml.safe_load((tools.EXAMPLES / "production.yaml").read_text())
    assert scaled["spec"]["maxReplicaCount"] <= values["inputTopicPartitions"]
    assert scaled["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    [auth] = [o for o in production if o["kind"] == "TriggerAuthentication"]
    parameters = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
    assert parameters == {"username", "password", "ca", "cert", "key"}


def test_the_hpa_scales_on_the_lag_the_workers_export(objects: Objects) -> None:
    [hpa] = [o for o in objects["hpa"] if o["kind"] == "HorizontalPodAutoscaler"]
    [metric] = hpa["spec"]["metrics"]
    exported = {family.name: family for family in WorkerMetrics().registry.collect()}
    name = metric["external"]["metric"]["name"]
    assert name in exported
    selector = metric["external"]["metric"]["selector"]["matchLabels"]
    assert selector == {"topic": Settings().input_topic}
    assert metric["external"]["target"]["type"] == "AverageValue"
    values = yaml.safe_load((tools.EXAMPLES / "hpa.yaml").read_text())
    assert hpa["spec"]["maxReplicas"] <= values["inputTopicPartitions"]


def test_the_service_monitor_scrapes_under_the_job_the_alerts_read(objects: Objects) -> None:
    [monitor] = [o for o in objects["production"] if o["kind"] == "ServiceMonitor"]
    [endpoint] = monitor["spec"]["endpoints"]
    assert {"action": "replace", "targetLabel": "job", "replacement": "scorer"} in endpoint[
        "relabelings"
    ]
    alerts = (tools.REPO / "deploy" / "prometheus" / "alerts.yml").read_text()
    assert 'job="scorer"' in alerts


def test_the_readme_documents_each_value_set_and_the_tool_versions() -> None:
    readme = (tools.REPO / "README.md").read_text()
    section = readme.split("## Deploying on Kubernetes", 1)[1].split("\n## ", 1)[0]
    for files in VALUE_SETS.values():
        for name in files:
            assert f"deploy/helm/examples/{name}" in section
    for key in ("HELM_VERSION", "KUBECONFORM_VERSION", "KEDA_VERSION"):
        assert tools.versions()[key] in section
