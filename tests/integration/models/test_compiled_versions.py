"""ONNX versions on a real Redis and broker: publish checks fidelity before storing anything,
an onnx-only version holds no pickle, workers verify and score the ONNX bytes, and a fleet
swaps joblib -> ONNX -> joblib mid-stream without losing or mis-scoring an event."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import pytest
from kafka import KafkaProducer
from sklearn.ensemble import RandomForestClassifier
from sklearn.semi_supervised import LabelSpreading

from tests.conftest import SteadyStream, TopicReader, send_events, settings_env, wait_until
from worker.errors import ArtifactRejected, RegistryError
from worker.models.artifacts import inspect_estimator
from worker.models.holder import load_version
from worker.models.registry import Registry
from worker.settings import Settings
from worker.tools.synthetic import FEATURES, click_labels, feature_rows

pytestmark = pytest.mark.integration

FEATURE_LIST = ",".join(FEATURES)


def saved(model: Any, tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.joblib"
    joblib.dump(model, path)
    return str(path)


def publish(scorer_main: Any, settings: Settings, path: str, version: str, *extra: str) -> Any:
    args = ("model", "publish", path, "--version", version, "--features", FEATURE_LIST)
    return scorer_main(settings, *args, *extra)


@pytest.fixture
def forest_file(forest: Any, tmp_path: Path) -> str:
    return saved(forest, tmp_path, "f")


def test_missing_values_an_onnx_graph_scores_unlike_scikit_learn_are_refused(
    settings: Settings, scorer_main: Any, registry: Registry, tmp_path: Path
) -> None:
    """A random forest takes NaN, but skl2onnx's forest drops the branches it learned for it:
    left to the probe, the ONNX version is stored refusing missing values, and says so; asked
    to accept them, publish refuses in one line."""
    rows = feature_rows(1500, seed=5)
    forest = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0)
    path = saved(forest.fit(rows, click_labels(rows, seed=5)), tmp_path, "rf")

    accepting = publish(
        scorer_main, settings, path, "v0", "--format", "onnx", "--missing", "accept"
    )
    done = publish(scorer_main, settings, path, "v1", "--format", "onnx")

    assert accepting.returncode == 5 and len(accepting.stderr.strip().splitlines()) == 1
    assert "ONNX scores differ" in accepting.stderr
    assert "a row with a missing value" in accepting.stderr
    assert done.returncode == 0, done.stderr
    assert "missing=reject" in done.stdout and "missing values refused" in done.stdout
    assert [e.version for e in registry.versions()] == ["v1"]
    assert not registry.entry("v1").accepts_missing


def test_an_onnx_only_version_stores_no_pickle_and_scores_as_scikit_learn_does(
    settings: Settings,
    scorer_main: Any,
    registry: Registry,
    redis_client: Any,
    forest: Any,
    forest_file: str,
) -> None:
    done = publish(scorer_main, settings, forest_file, "v1", "--format", "onnx")

    assert done.returncode == 0, done.stderr
    assert "format=onnx runtime=onnx" in done.stdout and "largest score difference" in done.stdout
    assert "missing=reject" in done.stdout  # gradient boosting refuses NaN
    entry = registry.entry("v1")
    assert entry.format == "onnx" and entry.runtime == "onnx" and entry.sha256 == ""
    assert entry.onnx is not None and entry.onnx.max_difference <= 1e-5
    assert set(entry.onnx.versions) == {"skl2onnx", "onnxruntime", "onnx"}
    key = f"{settings.registry_prefix}:version:v1"
    assert redis_client.hget(key, "artifact") is None  # nothing for a worker to unpickle
    loaded = load_version(registry, "v1", settings)
    assert loaded.sha256 == entry.onnx.sha256 == entry.served_sha256
    rows = feature_rows(300, seed=4)
    assert np.abs(loaded.score(rows) - forest.predict_proba(rows)[:, 1]).max() <= 1e-5
    listed = scorer_main(settings, "model", "list")
    assert "onnx" in listed.stdout.splitlines()[1] and entry.onnx.sha256[:12] in listed.stdout
    summary = orjson.loads(scorer_main(settings, "model", "list", "--json").stdout)
    (version,) = summary["versions"]
    assert version["format"] == "onnx" and "signature" not in version["onnx"]


def test_both_formats_store_both_and_workers_use_the_faster(
    settings: Settings, scorer_main: Any, registry: Registry, logistic: Any, tmp_path: Path
) -> None:
    path = saved(logistic, tmp_path, "l")
    done = publish(scorer_main, settings, path, "v1", "--format", "both")

    assert done.returncode == 0, done.stderr
    entry = registry.entry("v1")
    assert entry.format == "both" and entry.onnx is not None and entry.sha256
    faster = "onnx" if entry.onnx.onnx_us < entry.onnx.joblib_us else "joblib"
    assert entry.runtime == faster
    assert registry.artifact("v1", "joblib") and registry.artifact("v1", "onnx")
    assert f"both->{faster}" in scorer_main(settings, "model", "list").stdout


def test_refused_conversions_store_nothing_and_say_why_in_one_line(
    settings: Settings, scorer_main: Any, registry: Registry, forest: Any, tmp_path: Path
) -> None:
    rows = feature_rows(300, seed=2)
    spreading = LabelSpreading().fit(rows, click_labels(rows, seed=2))
    unconvertible = publish(
        scorer_main, settings, saved(spreading, tmp_path, "s"), "v1", "--format", "onnx"
    )
    too_tight = publish(
        scorer_main,
        settings,
        saved(forest, tmp_path, "f"),
        "v2",
        "--format",
        "both",
        "--tolerance",
        "1e-12",
    )

    assert unconvertible.returncode != 0
    assert "LabelSpreading cannot be converted to ONNX" in unconvertible.stderr
    assert len(unconvertible.stderr.strip().splitlines()) == 1
    assert too_tight.returncode != 0 and "above the tolerance 1e-12" in too_tight.stderr
    assert registry.versions() == []


def test_a_version_is_refused_when_the_runtime_it_names_is_not_stored(
    registry: Registry, logistic: Any
) -> None:
    info = inspect_estimator(logistic, FEATURES)
    with pytest.raises(RegistryError, match="would be scored by onnx, not stored"):
        registry.publish(b"joblib bytes", "v1", info, runtime="onnx")
    with pytest.raises(RegistryError, match="would be scored by joblib, not stored"):
        registry.publish(None, "v1", info)
    assert registry.versions() == []


def test_tampered_or_unsigned_onnx_bytes_are_refused(
    settings: Settings, scorer_main: Any, registry: Registry, redis_client: Any, forest_file: str
) -> None:
    signed = settings.replace(signing_key="key-one")
    for publisher, version in ((settings, "plain"), (signed, "signed")):
        done = publish(scorer_main, publisher, forest_file, version, "--format", "onnx")
        assert done.returncode == 0
    redis_client.hset(f"{settings.registry_prefix}:version:plain", "onnx_artifact", b"tampered")

    with pytest.raises(ArtifactRejected, match="sha256 mismatch"):
        load_version(registry, "plain", settings)
    with pytest.raises(ArtifactRejected, match="does not verify"):
        load_version(registry, "signed", settings.replace(signing_key="key-two"))
    assert load_version(registry, "signed", signed).version == "signed"


def test_a_pickle_free_fleet_scores_onnx_and_refuses_a_joblib_version_everywhere(
    settings: Settings,
    scorer_main: Any,
    registry: Registry,
    redis_client: Any,
    logistic: Any,
    forest_file: str,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
    tmp_path: Path,
) -> None:
    """allow_pickle false: a version stored both ways is scored from its ONNX bytes whichever
    was faster; a joblib-only one is refused by the CLI (activate, canary, a rollback to it)
    and, named by hand, by the worker, which keeps its model."""
    pickle_free = settings.replace(allow_pickle=False)
    logistic_path = saved(logistic, tmp_path, "l")
    both = publish(scorer_main, settings, forest_file, "both-v1", "--format", "both")
    joblib_only = publish(scorer_main, settings, logistic_path, "joblib-v2")
    assert both.returncode == joblib_only.returncode == 0
    assert scorer_main(settings, "model", "activate", "joblib-v2").returncode == 0  # history
    assert scorer_main(pickle_free, "model", "activate", "both-v1").returncode == 0
    refusals = [
        ("activate", "joblib-v2"),
        ("canary", "joblib-v2", "--percent", "10"),
        ("rollback",),  # to joblib-v2
    ]
    for refused in refusals:
        done = scorer_main(pickle_free, "model", *refused)
        assert done.returncode == 5 and "allow_pickle is false" in done.stderr, done
    assert registry.active_version() == "both-v1" and registry.route().canary is None

    worker = worker_factory(pickle_free)
    wait_until(lambda: worker.model_version() == "both-v1", what="both-v1 loaded")
    loaded = worker.worker.holder.current()
    onnx = registry.entry("both-v1").onnx
    assert loaded is not None and onnx is not None and loaded.sha256 == onnx.sha256
    redis_client.set(settings.active_key, "joblib-v2")
    wait_until(
        lambda: "allow_pickle is false" in (worker.worker.reloader.last_error or ""),
        timeout=settings.active_poll_s + 5,
        what="the joblib version refused",
    )
    ids = send_events(producer, settings.input_topic, feature_rows(50, seed=2))
    wait_until(lambda: reader.scored_ids() == set(ids), what="scoring goes on with both-v1")
    assert {p["model_version"] for p in reader.predictions} == {"both-v1"}


def test_a_fleet_swaps_joblib_to_onnx_and_back_mid_stream_losing_nothing(
    settings: Settings,
    scorer_main: Any,
    registry: Registry,
    logistic: Any,
    forest: Any,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
    tmp_path: Path,
) -> None:
    for path, version, *extra in [
        (saved(logistic, tmp_path, "l"), "joblib-v1", "--activate"),
        (saved(forest, tmp_path, "f"), "onnx-v2", "--format", "onnx"),
    ]:
        assert publish(scorer_main, settings, path, version, *extra).returncode == 0
    worker = worker_factory(settings)
    wait_until(worker.assigned, what="partitions assigned")
    rows = feature_rows(30_000, seed=12)

    def serving(version: str) -> None:
        wait_until(lambda: worker.model_version() == version, timeout=15, what=version)
        count = len(reader.predictions)
        wait_until(lambda: len(reader.predictions) > count + 300, what=f"{version} scoring")

    stream = SteadyStream(producer, settings.input_topic, rows)  # both swaps mid-stream
    serving("joblib-v1")
    assert scorer_main(settings, "model", "activate", "onnx-v2").returncode == 0
    serving("onnx-v2")
    loaded = worker.worker.holder.current()
    assert loaded is not None and loaded.sha256 == registry.entry("onnx-v2").served_sha256
    assert scorer_main(settings, "model", "rollback").returncode == 0
    serving("joblib-v1")
    rows = rows[: stream.stop()]
    wait_until(lambda: len(reader.scored_ids()) == len(rows), what="every event scored")

    expected = {
        "joblib-v1": (logistic.predict_proba(rows)[:, 1], 1e-9),
        "onnx-v2": (forest.predict_proba(rows)[:, 1], 1e-5),  # float32 trees
    }
    assert {p["model_version"] for p in reader.predictions} == set(expected)
    assert len(reader.predictions) == len(rows)  # none twice
    for prediction in reader.predictions:
        scores, tolerance = expected[prediction["model_version"]]
        index = int(prediction["event_id"].split("-")[1])
        assert abs(prediction["score"] - scores[index]) <= tolerance


def test_a_pickle_free_worker_process_never_imports_scikit_learn_or_joblib(
    settings: Settings, scorer_main: Any, forest_file: str
) -> None:
    """What the worker process imports to load and score an ONNX version (its memory: about
    120 MB of RSS is scikit-learn's)."""
    assert publish(scorer_main, settings, forest_file, "v1", "--format", "onnx").returncode == 0
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from worker.infra.clients import connect_redis\n"
        "from worker.models.holder import load_version\n"
        "from worker.models.registry import Registry\n"
        "from worker.service import Worker\n"
        "from worker.settings import load_settings\n"
        "import os\n"
        "settings = load_settings(os.environ)\n"
        "registry = Registry.for_settings(connect_redis(settings), settings)\n"
        "model = load_version(registry, 'v1', settings)\n"
        "model.score(np.zeros((3, len(model.features))))\n"
        "print(sorted(m for m in ('sklearn', 'joblib', 'scipy') if m in sys.modules))\n"
    )
    env = settings_env(settings.replace(allow_pickle=False))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
