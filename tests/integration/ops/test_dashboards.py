"""The shipped dashboard and alert rules against a real Prometheus (Debian's package) scraping
a real worker, a real monitor and a real retrainer: every panel's expression parses and returns
data, every rule loads and evaluates."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.conftest import TopicReader, artifact_bytes, send_events, wait_until
from tests.integration.lifecycle.conftest import send_labels
from worker.infra.clients import ensure_topics
from worker.models.artifacts import inspect_estimator
from worker.models.profile import build_profile
from worker.models.registry import Registry
from worker.settings import Settings
from worker.tools.stack import free_port
from worker.tools.synthetic import FEATURES, click_labels, feature_rows

pytestmark = pytest.mark.integration
DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
INSTALL_STEP = "prometheus is missing: `make tools` (Debian: apt-get install prometheus)"


def panel_expressions() -> list[str]:
    expressions = []
    for path in sorted(DEPLOY.glob("grafana/dashboards/*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            expressions += [target["expr"] for target in panel.get("targets", [])]
    return expressions


class Prometheus:
    """A Prometheus server on a free loopback port, scraping `targets` every second."""

    def __init__(self, work_dir: Path, targets: list[str]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail(INSTALL_STEP, pytrace=False)
        self.port = free_port()
        config = work_dir / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(DEPLOY / "prometheus" / "alerts.yml")],
                    "scrape_configs": [
                        {"job_name": "scorer", "static_configs": [{"targets": targets}]}
                    ],
                }
            )
        )
        self.log = (work_dir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={work_dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())

    def query(self, expr: str) -> Any:
        answer = self.api("query", query=expr)
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    started: list[Prometheus] = []

    def start(targets: list[str]) -> Prometheus:
        started.append(Prometheus(tmp_path, targets))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def test_every_panel_returns_data_and_every_rule_evaluates(
    settings: Settings,
    registry: Registry,
    logistic: Any,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
    monitor_factory: Any,
    retrainer_factory: Any,
    prometheus_for: Any,
    tmp_path: Path,
) -> None:
    """A worker scoring v1 (published with a reference profile, so drift is measured), a
    monitor joining the clicks, and a retrainer fitting candidates on them: every panel, the
    quality and retraining rows too, has data."""
    started = time.monotonic()
    settings = settings.replace(quality_interval_s=0.5, retrain_min_rows=200, retrain_interval_s=1)
    rows = feature_rows(300, seed=3)
    reference = build_profile(rows, FEATURES, logistic.predict_proba(rows)[:, 1])
    info = inspect_estimator(logistic, FEATURES)
    data = artifact_bytes(logistic, tmp_path)
    ensure_topics(settings, labels=True)  # before the clicks, whenever the monitor starts
    registry.publish(data, "v1", info, reference=reference.to_json())
    registry.activate("v1")
    worker, monitor = worker_factory(settings), monitor_factory(settings).monitor
    retrainer = retrainer_factory(settings).retrainer
    parts = (worker.worker, monitor, retrainer)
    wait_until(lambda: all(part.health for part in parts), what="the HTTP servers")
    prometheus = prometheus_for([f"127.0.0.1:{part.health.port}" for part in parts])
    wait_until(lambda: _up(prometheus, 3), timeout=30, what="Prometheus scraping all three")
    ids = send_events(producer, settings.input_topic, rows)
    wait_until(lambda: reader.scored_ids() == set(ids), what="every event scored")
    clicks = dict(zip(ids, click_labels(rows).tolist(), strict=True))
    send_labels(producer, settings.labels_topic, clicks)
    wait_until(lambda: prometheus.query("scorer_quality_auc"), what="quality figures scraped")
    for fitted in (
        "sum(scorer_retrain_candidates_total) > 0",
        "scorer_retrain_fit_seconds_count > 0",
    ):
        wait_until(lambda e=fitted: prometheus.query(e), what="a candidate fitted and scraped")  # type: ignore[misc]
    time.sleep(3)  # a few more scrapes, so rate() over the panels' windows has two samples

    empty = [expr for expr in panel_expressions() if not prometheus.query(expr)]
    assert empty == []
    rules = [rule for group in prometheus.api("rules")["data"]["groups"] for rule in group["rules"]]
    assert len(rules) >= 10
    assert {rule["health"] for rule in rules} == {"ok"}, rules
    print(f"dashboard test: {time.monotonic() - started:.1f} s")


def _up(prometheus: Prometheus, targets: int) -> bool:
    try:
        up = prometheus.query('up{job="scorer"}')
        return bool(sum(s["value"][1] == "1" for s in up) == targets)
    except OSError:
        return False
