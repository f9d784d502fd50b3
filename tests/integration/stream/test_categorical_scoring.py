"""CTR Pipelines with categorical and missing features, published with `scorer model publish`
and scored by a running worker on the real broker and Redis: every arm's score equals the
Pipeline's own predict_proba on a DataFrame built by hand from the same events; each wrong
value is dead-lettered naming its feature; a version whose step makes NaN from finite input
never publishes a null score, and the guard rolls it back; and what no worker could warm up is
refused before it reaches the fleet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import pandas as pd
import pytest
from kafka import KafkaProducer
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from tests.conftest import TopicReader, artifact_bytes, send_events, wait_until
from tests.integration.lifecycle.conftest import guard_changes
from worker.models.artifacts import inspect_estimator
from worker.models.registry import Registry
from worker.settings import Settings
from worker.tools.ctr import ctr_frame as make_frame
from worker.tools.ctr import event_features, train_ctr
from worker.tools.synthetic import FEATURES, feature_rows

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Path]]:
    """(a), (b) and (c), fitted once on 3,000 CTR rows, with their joblib files."""
    folder = tmp_path_factory.mktemp("ctr")
    fitted = {}
    for name in ("ctr-onehot", "ctr-hgb", "ctr-hashed"):
        model = train_ctr(name, n=3000, seed=4)
        joblib.dump(model, folder / f"{name}.joblib")
        fitted[name] = (model, folder / f"{name}.joblib")
    return fitted


def ctr_events(n: int, seed: int) -> tuple[pd.DataFrame, list[dict[str, object]]]:
    """n CTR events with what real pipelines send besides: unseen categories and absent
    features; and the DataFrame a person would build from them by hand."""
    frame = make_frame(n, seed)
    rows = event_features(frame)
    for i in range(0, n, 7):
        rows[i]["C2"] = f"never-seen-{i}"
        frame.loc[i, "C2"] = f"never-seen-{i}"
    for i in range(3, n, 11):
        del rows[i]["I5"]
        frame.loc[i, "I5"] = np.nan
    return frame, rows


BAD: dict[str, tuple[dict[str, object], str, str]] = {
    "bad-list": ({"C1": ["a"]}, "invalid_category", "'C1'"),
    "bad-number": ({"C3": 17}, "invalid_category", "'C3'"),
    "bad-long": ({"C4": "x" * 300}, "category_too_long", "'C4'"),
    "bad-text": ({"I1": "3"}, "non_numeric_feature", "'I1'"),
}


def test_each_arm_scores_as_the_pipelines_own_predict_proba_and_bad_values_are_named(
    settings: Settings,
    client_settings: Settings,
    scorer_main: Any,
    pipelines: dict[str, tuple[Any, Path]],
    registry: Registry,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
) -> None:
    """(a) the primary, (b) a 50 % canary, (c) a shadow, on the same events."""
    for version, name in (("onehot", "ctr-onehot"), ("hgb", "ctr-hgb"), ("hashed", "ctr-hashed")):
        published = scorer_main(
            settings, "model", "publish", str(pipelines[name][1]), "--version", version
        )
        assert published.returncode == 0, published.stderr
        assert "(26 category) missing=accept input=frame" in published.stdout
    assert scorer_main(settings, "model", "activate", "onehot").returncode == 0
    assert scorer_main(settings, "model", "canary", "hgb", "--percent", "50").returncode == 0
    assert scorer_main(settings, "model", "shadow", "hashed").returncode == 0
    frame, rows = ctr_events(300, seed=12)
    send_with_bad(producer, settings.input_topic, rows)
    worker_factory(client_settings)

    wait_until(
        lambda: len(reader.predictions) >= 300 and len(reader.dead_letters) >= len(BAD),
        what="every event scored or dead-lettered",
    )
    wait_until(lambda: len(reader.shadow_predictions) >= 300, what="every shadow prediction")
    expected = {
        version: dict(
            zip(
                [f"e-{i}" for i in range(300)],
                pipelines[name][0].predict_proba(frame)[:, 1],
                strict=True,
            )
        )
        for version, name in (
            ("onehot", "ctr-onehot"),
            ("hgb", "ctr-hgb"),
            ("hashed", "ctr-hashed"),
        )
    }
    arms = {p["model_version"]: p["arm"] for p in reader.predictions + reader.shadow_predictions}
    assert arms == {"onehot": "primary", "hgb": "canary", "hashed": "shadow"}
    for prediction in reader.predictions + reader.shadow_predictions:
        want = expected[prediction["model_version"]][prediction["event_id"]]
        assert abs(prediction["score"] - want) <= 1e-9
    assert len({p["event_id"] for p in reader.predictions}) == len(reader.predictions) == 300
    letters = {r.key.decode(): dict(r.headers) for r in reader.dead_letters}
    assert set(letters) == set(BAD)
    for event_id, (_, reason, named) in BAD.items():
        assert letters[event_id]["error"].decode() == reason
        assert named in letters[event_id]["error_detail"].decode()


def send_with_bad(producer: KafkaProducer, topic: str, rows: list[dict[str, object]]) -> None:
    """The events `e-0`..., then one of each BAD value (keyed by its name)."""
    for i, row in enumerate(rows):
        producer.send(topic, key=f"e-{i}".encode(), value=_event(f"e-{i}", row))
    for event_id, (change, _, _) in BAD.items():
        producer.send(topic, key=event_id.encode(), value=_event(event_id, rows[0] | change))
    producer.flush()


def _event(event_id: str, features: dict[str, object]) -> bytes:
    return orjson.dumps({"event_id": event_id, "ts": 1.0, "features": features})


def test_a_step_that_makes_nan_never_publishes_a_null_score_and_is_rolled_back(
    settings: Settings,
    scorer_main: Any,
    publish: Any,
    logistic: Any,
    registry: Registry,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
    monitor_factory: Any,
    tmp_path: Path,
) -> None:
    """log1p of a value below -1 is NaN: about one row in six of v2's. Each is dead-lettered
    as scoring_failed, the rest scored; the error rate counts them and the guard rolls the
    freshly activated v2 back to v1."""
    settings = settings.replace(
        guard_min_labels=100,
        quality_interval_s=0.5,
        guard_max_error_rate=0.05,
        guard_rollback_window_s=600,
    )
    publish(logistic, "v1")
    rows = feature_rows(2000, seed=8)
    frame = pd.DataFrame(rows, columns=list(FEATURES))
    logged = make_pipeline(
        ColumnTransformer(
            [("log", FunctionTransformer(np.log1p), ["f0"])], remainder=StandardScaler()
        ),
        LogisticRegression(),
    ).fit(frame.assign(f0=frame["f0"].abs()), rows[:, 1] > 0)
    path = tmp_path / "logged.joblib"
    joblib.dump(logged, path)
    assert (
        scorer_main(
            settings, "model", "publish", str(path), "--version", "v2", "--activate"
        ).returncode
        == 0
    )
    worker_factory(settings)
    monitor_factory(settings)
    ids = send_events(producer, settings.input_topic, rows[:1000])

    wait_until(lambda: registry.active_version() == "v1", timeout=60, what="v2 rolled back")
    [rollback] = guard_changes(registry, "rollback")
    assert rollback["rolled_back"] == "v2" and "guard_max_error_rate" in rollback["reason"]
    wait_until(
        lambda: (
            len(reader.scored_ids() | {r.key.decode() for r in reader.dead_letters}) >= len(ids)
        ),
        what="every event accounted for",
    )
    assert all(
        isinstance(p["score"], float) and np.isfinite(p["score"]) for p in reader.predictions
    )
    failed = [dict(r.headers) for r in reader.dead_letters]
    assert failed and {h["error"] for h in failed} == {b"scoring_failed"}
    assert all(
        h["model_version"] == b"v2" and b"not a finite number" in h["error_detail"] for h in failed
    )
    nan_rows = {f"e-{i}" for i in range(1000) if rows[i, 0] < -1}
    assert {r.key.decode() for r in reader.dead_letters} <= nan_rows


def test_what_no_worker_could_warm_up_is_refused_before_it_reaches_the_fleet(
    settings: Settings,
    scorer_main: Any,
    pipelines: dict[str, tuple[Any, Path]],
    registry: Registry,
    tmp_path: Path,
) -> None:
    """At publish, a kind that the Pipeline cannot take; and an entry stored before publish
    checked it (numbers, an array: the ColumnTransformer selects columns by name) is refused
    by activate, canary and shadow, in one line, and nothing changes."""
    model, path = pipelines["ctr-onehot"]
    wrong = scorer_main(
        settings, "model", "publish", str(path), "--version", "v9", "--feature-types", "C1:number"
    )
    assert wrong.returncode == 5 and "a worker could not warm this version up" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    unknown = scorer_main(
        settings, "model", "publish", str(path), "--version", "v9", "--feature-types", "Z9:number"
    )
    assert unknown.returncode == 5 and "names 'Z9', not features" in unknown.stderr
    kind = scorer_main(
        settings, "model", "publish", str(path), "--version", "v9", "--feature-types", "C1:text"
    )
    assert kind.returncode == 2 and "unknown kind 'text'" in kind.stderr
    assert registry.versions() == []

    registry.publish(
        artifact_bytes(logistic_on(), tmp_path), "ok", inspect_estimator(logistic_on(), FEATURES)
    )
    registry.activate("ok")
    registry.publish(path.read_bytes(), "old", inspect_estimator(model))  # as stored before
    for command in (["activate", "old"], ["canary", "old", "--percent", "10"], ["shadow", "old"]):
        refused = scorer_main(settings, "model", *command)
        assert refused.returncode == 5, command
        assert "warm-up prediction failed" in refused.stderr and "dataframe" in refused.stderr
    assert registry.active_version() == "ok" and registry.route().empty
    listed = orjson.loads(scorer_main(settings, "model", "list", "--json").stdout)
    kinds = {v["version"]: v["feature_kinds"] for v in listed["versions"]}
    assert set(kinds["old"].values()) == {"number"}


def logistic_on() -> Any:
    rows = feature_rows(200, seed=1)
    return LogisticRegression().fit(rows, rows[:, 0] > 0)


def test_model_list_shows_each_features_kind_and_the_missing_policy(
    settings: Settings, scorer_main: Any, pipelines: dict[str, tuple[Any, Path]]
) -> None:
    path = pipelines["ctr-hgb"][1]
    assert (
        scorer_main(
            settings, "model", "publish", str(path), "--version", "b1", "--missing", "reject"
        ).returncode
        == 0
    )
    spec = Path(path.parent / "kinds.json")
    spec.write_text('{"C1": "category", "I1": "number"}')
    assert (
        scorer_main(
            settings,
            "model",
            "publish",
            str(path),
            "--version",
            "b2",
            "--feature-types",
            f"@{spec}",
        ).returncode
        == 0
    )
    listed = orjson.loads(scorer_main(settings, "model", "list", "--json").stdout)
    entries = {v["version"]: v for v in listed["versions"]}
    assert entries["b1"]["accepts_missing"] is False and entries["b2"]["accepts_missing"] is True
    assert (
        entries["b1"]["feature_kinds"]["C1"] == "category"
        and entries["b1"]["feature_kinds"]["I1"] == "number"
    )
    assert entries["b2"]["input_form"] == "frame" and entries["b2"]["warm_up_row"][0] == 0.0


def test_the_onnx_forms_of_a_and_b_score_as_the_pipelines_in_a_pickle_free_worker(
    settings: Settings,
    client_settings: Settings,
    scorer_main: Any,
    pipelines: dict[str, tuple[Any, Path]],
    registry: Registry,
    producer: KafkaProducer,
    reader: TopicReader,
    worker_factory: Any,
) -> None:
    """(a) and (b) as ONNX only (skl2onnx's string tensors), a 50 % canary between them, in a
    worker with allow_pickle false: scores within the ONNX tolerance of the Pipelines' own
    predict_proba, unseen categories and missing values included; bad values named."""
    for version, name in (("onehot-onnx", "ctr-onehot"), ("hgb-onnx", "ctr-hgb")):
        published = scorer_main(
            settings, "model", "publish", str(pipelines[name][1]), "--version", version,
            "--format", "onnx",
        )  # fmt: skip
        assert published.returncode == 0, published.stderr
        assert "missing=accept input=frame format=onnx runtime=onnx" in published.stdout
        assert registry.entry(version).sha256 == ""  # no joblib bytes stored
    assert scorer_main(settings, "model", "activate", "onehot-onnx").returncode == 0
    assert scorer_main(settings, "model", "canary", "hgb-onnx", "--percent", "50").returncode == 0
    frame, rows = ctr_events(200, seed=21)
    send_with_bad(producer, settings.input_topic, rows)
    worker_factory(client_settings.replace(allow_pickle=False))

    wait_until(
        lambda: len(reader.predictions) >= 200 and len(reader.dead_letters) >= len(BAD),
        what="every event scored or dead-lettered",
    )
    expected = {
        version: dict(enumerate(pipelines[name][0].predict_proba(frame)[:, 1]))
        for version, name in (("onehot-onnx", "ctr-onehot"), ("hgb-onnx", "ctr-hgb"))
    }
    assert {p["model_version"] for p in reader.predictions} == set(expected)
    for prediction in reader.predictions:
        want = expected[prediction["model_version"]][int(prediction["event_id"][2:])]
        assert abs(prediction["score"] - want) <= 1e-5
    letters = {r.key.decode(): r.headers for r in reader.dead_letters}
    assert set(letters) == set(BAD)


def test_an_unconvertible_step_and_a_reference_a_version_cannot_take_are_refused_in_one_line(
    settings: Settings,
    scorer_main: Any,
    pipelines: dict[str, tuple[Any, Path]],
    registry: Registry,
    tmp_path: Path,
) -> None:
    """skl2onnx converts no FunctionTransformer with a function: (c)'s hashing step is named;
    a version that refuses missing values cannot be profiled on a reference whose every row
    has one. Nothing is stored."""
    onnx = scorer_main(
        settings, "model", "publish", str(pipelines["ctr-hashed"][1]), "--version", "o1",
        "--format", "onnx",
    )  # fmt: skip
    assert onnx.returncode == 5 and len(onnx.stderr.strip().splitlines()) == 1
    assert (
        "step columntransformer/hashed/functiontransformer (FunctionTransformer) cannot be "
        "converted to ONNX" in onnx.stderr
    )
    model = tmp_path / "logistic.joblib"
    joblib.dump(logistic_on(), model)
    reference = tmp_path / "holes.csv"
    reference.write_text(",".join(FEATURES) + "\n" + "1," * (len(FEATURES) - 1) + "\n")
    holes = scorer_main(
        settings, "model", "publish", str(model), "--version", "r1",
        "--features", ",".join(FEATURES), "--reference", str(reference),
    )  # fmt: skip
    assert holes.returncode == 5
    assert "every reference row has a missing value" in holes.stderr
    assert len(holes.stderr.strip().splitlines()) == 1
    assert registry.versions() == []
