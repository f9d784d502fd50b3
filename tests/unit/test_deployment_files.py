"""docker-compose.yml, Dockerfile, Prometheus and Grafana files agree with the code.

No Docker engine runs here, so these files are checked by parsing them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import yaml

from worker.lifecycle.metrics import MonitorMetrics, RetrainMetrics
from worker.ops.metrics import WorkerMetrics
from worker.settings import ENV_PREFIX, Settings, setting_names

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def exported_metric_names() -> set[str]:
    """What a worker's, a monitor's and a retrainer's /metrics hold (the quality row reads the
    monitor, the retraining row the retrainer)."""
    names = set()
    families = [
        *WorkerMetrics().registry.collect(),
        *MonitorMetrics().registry.collect(),
        *RetrainMetrics().registry.collect(),
    ]
    for family in families:
        names |= {sample.name for sample in family.samples}
        names.add(family.name)
    # families that have no sample until first use still export these series
    return (
        names
        | {f"{n}_total" for n in names}
        | {f"{n}_{suffix}" for n in names for suffix in ("bucket", "count", "sum")}
    )


def test_every_scorer_variable_in_compose_is_a_real_setting() -> None:
    services = compose()["services"]
    variables = {
        name
        for service in services.values()
        for name in (service.get("environment") or {})
        if name.startswith(ENV_PREFIX)
    }
    assert variables, "the workers get their settings from the environment"
    known = {ENV_PREFIX + name.upper() for name in setting_names()}
    assert variables <= known, variables - known


def test_compose_runs_kraft_kafka_redis_two_workers_prometheus_and_grafana() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["redis"]["image"].startswith("redis:")
    assert "kafka-topics.sh" in "".join(services["kafka-init"]["command"])
    worker = services["worker"]
    assert worker["build"] == "." and worker["deploy"]["replicas"] == 2
    assert worker["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert {"prometheus", "grafana"} <= set(services)
    for volume in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        assert (REPO / volume.split(":")[0]).exists(), volume


def test_topics_created_by_compose_match_the_worker_settings() -> None:
    script = "".join(compose()["services"]["kafka-init"]["command"])
    env = compose()["services"]["worker"]["environment"]
    for name in ("INPUT", "OUTPUT", "DLQ", "CONTROL", "SHADOW", "LABELS"):
        assert env[f"SCORER_{name}_TOPIC"] in script


def test_prometheus_scrapes_the_workers_monitors_and_retrainers_metrics_port() -> None:
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    port = job["dns_sd_configs"][0]["port"]
    assert port == Settings().metrics_port
    assert str(port) == compose()["services"]["worker"]["environment"]["SCORER_METRICS_PORT"]
    assert job["dns_sd_configs"][0]["names"] == ["worker", "monitor", "retrainer"]
    assert compose()["services"]["monitor"]["command"] == ["monitor"]
    assert compose()["services"]["retrainer"]["command"] == ["retrain"]
    assert config["rule_files"] == ["alerts.yml"]  # mounted beside it by compose


def test_compose_stops_each_process_after_its_drain() -> None:
    """At stop a process waits up to delivery_timeout_s for its last batch's acks and as
    long again for its final commit."""
    for name in ("worker", "monitor", "retrainer"):
        grace = compose()["services"][name]["stop_grace_period"]
        assert int(grace.removesuffix("s")) > 2 * Settings().delivery_timeout_s


def test_dashboard_queries_only_metrics_the_worker_monitor_and_retrainer_export() -> None:
    dashboard = orjson.loads((REPO / "deploy/grafana/dashboards/scorer.json").read_bytes())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    used = {name for expr in expressions for name in re.findall(r"scorer_[a-z_]+", expr)}
    assert used and used <= exported_metric_names(), used - exported_metric_names()
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    topics = ["throughput", "latency", "lag", "version", "reload", "dead-letter", "auc", "drift"]
    topics += ["candidates", "window", "fit"]  # the retraining row
    for topic in topics:
        assert topic in titles


def test_dockerfile_is_slim_non_root_and_health_checked() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", dockerfile, re.MULTILINE)
    user = re.search(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert user and user.group(1) not in ("root", "0")
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    assert "pip install '.[onnx,avro]'" in dockerfile  # ONNX versions, Avro records


def test_the_readme_documents_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [n for n in setting_names() if f"{ENV_PREFIX}{n.upper()}" not in readme]
    assert missing == []
