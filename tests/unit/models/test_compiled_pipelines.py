"""ONNX for Pipelines fitted on a DataFrame: one input per column (float32 numbers with NaN,
string categories), scores within the tolerance of scikit-learn's on rows with missing values
and unseen categories, skl2onnx's two gaps mended, and what cannot convert named."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from worker.errors import ArtifactRejected
from worker.models.artifacts import inspect_estimator
from worker.models.compiled import Compiled, compile_estimator, onnx_score_function
from worker.models.entry import OnnxArtifact
from worker.models.features import CATEGORY, NUMBER, FeatureSchema, estimator_kinds, rows_matrix
from worker.models.fidelity_rows import PROBE_ROWS, VARIANT_ROWS, probe_rows
from worker.models.onnx_inputs import UNSEEN_TEXT, feeds_for
from worker.models.probe import probe_version
from worker.tools.ctr import FEATURES, ctr_frame, event_features, train_ctr


def compiled_version(model: Any) -> tuple[Compiled, FeatureSchema, np.ndarray]:
    """As publish does it: the schema the probe proves, its probe rows, the conversion."""
    info = inspect_estimator(model, None)
    kinds = estimator_kinds(model)
    schema = probe_version(
        model, info.kind, info.features, [kinds.get(n, NUMBER) for n in info.features]
    )
    probe = probe_rows(model, schema.schema, None)
    return compile_estimator(model, info, probe, 1e-5, schema.schema), schema.schema, probe


@pytest.fixture(scope="module", params=["ctr-onehot", "ctr-hgb"])
def pipeline(request: pytest.FixtureRequest) -> Any:
    return train_ctr(request.param, n=2000, seed=8)


def test_a_ctr_pipeline_compiles_within_the_tolerance_on_missing_and_unseen_rows(
    pipeline: Any,
) -> None:
    compiled, schema, probe = compiled_version(pipeline)

    assert schema.accepts_missing and schema.form == "frame"
    assert len(probe) == PROBE_ROWS + 2 * VARIANT_ROWS == compiled.probe_rows
    values = probe.ravel().tolist()
    assert None in values and any(str(v).startswith("unseen-C") for v in values)
    assert compiled.max_difference <= 1e-5 and compiled.missing_text == "nan"


def test_its_graph_scores_events_as_the_pipelines_own_predict_proba(pipeline: Any) -> None:
    """Events as a worker decodes them (None where missing), some categories never seen."""
    compiled, schema, _ = compiled_version(pipeline)
    frame = ctr_frame(400, seed=30)
    rows = event_features(frame)
    for i in range(0, len(rows), 5):
        rows[i]["C3"] = frame.loc[i, "C3"] = f"new-{i}"
    matrix = rows_matrix(schema, [tuple(row[name] for name in FEATURES) for row in rows])

    score = onnx_score_function(compiled.data, "classifier", 1, schema, compiled.missing_text)

    scores = score(matrix)
    assert np.abs(scores - pipeline.predict_proba(frame)[:, 1]).max() <= 1e-5
    assert None in matrix.ravel().tolist()  # the decoded rows are not written into


def test_an_ordinal_encoder_fitted_on_none_takes_none_as_missing() -> None:
    """Rows from JSON records hold None, not NaN: the encoder's None category is keyed
    "None" in the graph, and coded by its position as scikit-learn codes it (only a NaN
    category is coded NaN)."""
    rng = np.random.default_rng(3)
    values = np.array(["a", "b", "c", None], dtype=object)[rng.integers(4, size=600)]
    frame = pd.DataFrame({"c": pd.Series(values, dtype=object), "x": rng.normal(size=600)})
    labels = (frame["c"].isna().to_numpy() | (frame["x"].to_numpy() > 1)).astype(int)
    model = make_pipeline(
        ColumnTransformer(
            [
                (
                    "codes",
                    OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                    ["c"],
                )
            ],
            remainder="passthrough",
        ),
        HistGradientBoostingClassifier(max_iter=20, random_state=0),
    ).fit(frame, labels)

    compiled, schema, _ = compiled_version(model)

    assert compiled.missing_text == "None" and schema.kinds == (CATEGORY, NUMBER)
    missing = rows_matrix(schema, [(None, 0.0), ("a", 0.0), ("zz", 0.0)])
    score = onnx_score_function(compiled.data, "classifier", 1, schema, compiled.missing_text)
    by_hand = pd.DataFrame({"c": pd.Series([None, "a", "zz"], dtype=object), "x": [0.0] * 3})
    assert np.abs(score(missing) - model.predict_proba(by_hand)[:, 1]).max() <= 1e-5


def test_a_step_skl2onnx_cannot_convert_is_named_in_one_line() -> None:
    model = train_ctr("ctr-hashed", n=500, seed=2)
    with pytest.raises(ArtifactRejected) as refused:
        compiled_version(model)
    message = str(refused.value)
    assert message.startswith(
        "step columntransformer/hashed/functiontransformer (FunctionTransformer) cannot be "
        "converted to ONNX: RuntimeError: FunctionTransformer is not supported"
    )
    assert "\n" not in message


def test_feeds_give_each_column_its_input_and_missing_categories_the_missing_text() -> None:
    schema = FeatureSchema(("x", "c"), (NUMBER, CATEGORY), accepts_missing=True)
    matrix = rows_matrix(schema, [(1.5, "a"), (None, None), (2.0, "nan")])

    feeds = feeds_for(["x", "c"], schema, "nan")(matrix)

    assert feeds["x"].dtype == np.float32 and feeds["x"].shape == (3, 1)
    assert feeds["x"][0, 0] == 1.5 and np.isnan(feeds["x"][1, 0])
    assert feeds["c"].ravel().tolist() == ["a", "nan", UNSEEN_TEXT]
    assert matrix[1].tolist() == [None, None] and matrix[2, 1] == "nan"
    one = feeds_for(["input"], FeatureSchema.numbers(["a", "b"]), "nan")(np.ones((3, 2)))
    assert list(one) == ["input"] and one["input"].dtype == np.float32


def test_a_graph_whose_inputs_are_not_the_versions_features_is_refused(pipeline: Any) -> None:
    compiled, schema, _ = compiled_version(pipeline)
    renamed = FeatureSchema(tuple(f"x{i}" for i in range(len(schema.names))), schema.kinds)
    with pytest.raises(ArtifactRejected, match="neither one matrix nor the version's features"):
        onnx_score_function(compiled.data, "classifier", 1, renamed)


def test_an_onnx_entry_stored_before_categories_reads_nan_as_its_missing_text() -> None:
    stored = {
        "sha256": "ab",
        "signature": "",
        "opset": 21,
        "max_difference": 0.0,
        "probe_rows": 2000,
        "joblib_us": 1.0,
        "onnx_us": 1.0,
        "versions": {},
    }
    assert OnnxArtifact(**orjson.loads(orjson.dumps(stored))).missing_text == "nan"


def encoded_pipeline(encoder: Any, categories: list[object], seed: int = 3) -> Any:
    """One category column `c` through `encoder`, a number `x` passed through, into a
    gradient boosting, fitted on a DataFrame."""
    rng = np.random.default_rng(seed)
    values = np.array(categories, dtype=object)[rng.integers(len(categories), size=600)]
    frame = pd.DataFrame({"c": pd.Series(values, dtype=object), "x": rng.normal(size=600)})
    labels = ((frame["c"] == categories[0]).to_numpy() | (frame["x"].to_numpy() > 1)).astype(int)
    columns = ColumnTransformer([("codes", encoder, ["c"])], remainder="passthrough")
    model = make_pipeline(columns, HistGradientBoostingClassifier(max_iter=20, random_state=0))
    return model.fit(frame, labels)


def test_the_text_nan_sent_as_a_category_is_unseen_not_missing() -> None:
    """The graph keys the NaN category "nan": a worker gives that text as unseen, as
    scikit-learn takes it; the probe rows hold it, so the check would have said otherwise."""
    model = encoded_pipeline(
        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["a", "b", np.nan]
    )
    compiled, schema, probe = compiled_version(model)

    assert "nan" in probe[:, 0].tolist()
    score = onnx_score_function(compiled.data, "classifier", 1, schema, compiled.missing_text)
    rows = rows_matrix(schema, [("nan", 0.0), (None, 0.0), ("a", 0.0)])
    by_hand = pd.DataFrame({"c": pd.Series(["nan", np.nan, "a"], dtype=object), "x": [0.0] * 3})
    assert np.abs(score(rows) - model.predict_proba(by_hand)[:, 1]).max() <= 1e-5


def test_a_category_fitted_as_the_text_read_as_missing_is_refused() -> None:
    model = encoded_pipeline(OneHotEncoder(handle_unknown="ignore"), ["a", "nan"])
    with pytest.raises(ArtifactRejected, match="feature 'c' has the category 'nan'"):
        compiled_version(model)


def test_an_encoder_refusing_unseen_categories_must_be_refused_alike_by_its_graph() -> None:
    """OneHotEncoder's graph raises on an unseen value as scikit-learn does; OrdinalEncoder's
    would score it (its LabelEncoder's default), so that version is refused."""
    onehot = encoded_pipeline(OneHotEncoder(), ["a", "b"])
    compiled, _, probe = compiled_version(onehot)
    assert compiled.max_difference <= 1e-5
    assert not any(str(v).startswith("unseen-") for v in probe[:, 0].tolist())

    ordinal = encoded_pipeline(OrdinalEncoder(), ["a", "b"])
    with pytest.raises(ArtifactRejected, match=r"refuses unseen categories .* scores them"):
        compiled_version(ordinal)


def test_an_estimator_fitted_on_a_frame_of_numbers_takes_one_matrix() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    model = LogisticRegression().fit(frame, (frame["a"] > 0).astype(int))

    compiled, schema, probe = compiled_version(model)

    assert compiled.max_difference <= 1e-5
    score = onnx_score_function(compiled.data, "classifier", 1, schema, compiled.missing_text)
    by_hand = model.predict_proba(pd.DataFrame(probe, columns=["a", "b"]))[:, 1]
    assert np.abs(score(probe) - by_hand).max() <= 1e-5


def test_a_forest_that_learnt_nan_compiles_refusing_missing_values_when_it_may() -> None:
    """skl2onnx's forest drops the branches learnt for NaN: only the rows with a missing
    value differ, so the version may be compiled refusing them, checked on the others."""
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(600, 3))
    labels = (rows[:, 0] + rows[:, 1] > 0).astype(int)
    rows[rng.random(rows.shape) < 0.2] = np.nan
    forest = RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0).fit(rows, labels)
    info = inspect_estimator(forest, ["a", "b", "c"])
    schema = probe_version(forest, "classifier", info.features, (NUMBER,) * 3).schema
    probe = probe_rows(forest, schema, None)  # its NaN splits' thresholds are infinite
    assert schema.accepts_missing and np.isfinite(probe[:PROBE_ROWS]).all()

    with pytest.raises(ArtifactRejected, match="the largest on a row with a missing value"):
        compile_estimator(forest, info, probe, 1e-5, schema)
    compiled = compile_estimator(forest, info, probe, 1e-5, schema, may_refuse_missing=True)

    assert compiled.refuses_missing and compiled.max_difference <= 1e-5
    assert compiled.probe_rows == PROBE_ROWS + VARIANT_ROWS - int(
        np.isnan(probe[PROBE_ROWS:]).any(axis=1).sum()
    )
