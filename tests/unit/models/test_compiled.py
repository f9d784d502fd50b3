"""ONNX conversion: scores equal scikit-learn's within the tolerance for every model kind the
fleet runs, refusals name what failed, and the probe rows stay where the model splits."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import (
    GradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.semi_supervised import LabelSpreading

from worker.errors import ArtifactRejected
from worker.models.artifacts import inspect_estimator
from worker.models.compiled import Compiled, compile_estimator, onnx_score_function
from worker.models.features import FeatureSchema
from worker.models.fidelity_rows import DEFAULT_RANGE, PROBE_ROWS, feature_ranges, probe_rows
from worker.models.scoring import score_function
from worker.tools.synthetic import FEATURES, click_labels, feature_rows

ROWS = feature_rows(1500, seed=5)
CLICKS = click_labels(ROWS, seed=5)

MODELS = {
    "logistic regression": lambda: LogisticRegression(max_iter=500),
    "forest": lambda: RandomForestClassifier(n_estimators=30, max_depth=8, random_state=0),
    "gradient boosting": lambda: GradientBoostingClassifier(n_estimators=30, random_state=0),
    "scaler + logistic regression": lambda: make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=500)
    ),
}


def compiled_and_info(model: Any, tolerance: float = 1e-5) -> tuple[Any, Any]:
    info = inspect_estimator(model, FEATURES)
    probe = probe_rows(model, FeatureSchema.numbers(FEATURES), None)
    return compile_estimator(model, info, probe, tolerance), info


@pytest.mark.parametrize("name", MODELS)
def test_onnx_scores_equal_scikit_learns_within_the_tolerance(name: str) -> None:
    model = MODELS[name]().fit(ROWS, CLICKS)

    compiled, info = compiled_and_info(model)

    assert 0 <= compiled.max_difference <= 1e-5
    assert compiled.probe_rows == PROBE_ROWS and compiled.opset >= 15
    assert compiled.joblib_us > 0 and compiled.onnx_us > 0
    unseen = feature_rows(500, seed=9)  # rows the check never scored
    onnx = onnx_score_function(compiled.data, info.kind, threads=1)(unseen)
    assert np.abs(onnx - score_function(model, info.kind)(unseen)).max() <= 1e-5
    assert onnx.dtype == np.float64 and onnx.shape == (500,)


def test_a_regressor_scores_its_prediction() -> None:
    model = RandomForestRegressor(n_estimators=10, max_depth=6, random_state=0)
    model.fit(ROWS, ROWS[:, 0] * 2)

    compiled, info = compiled_and_info(model)

    assert info.kind == "regressor"
    onnx = onnx_score_function(compiled.data, "regressor", threads=1)(ROWS[:50])
    assert np.abs(onnx - model.predict(ROWS[:50])).max() <= 1e-5


def test_an_estimator_skl2onnx_cannot_convert_is_refused_by_name() -> None:
    model = LabelSpreading().fit(ROWS[:300], CLICKS[:300])

    with pytest.raises(ArtifactRejected, match="LabelSpreading cannot be converted to ONNX"):
        compiled_and_info(model)


def test_a_difference_above_the_tolerance_is_refused_with_the_figure() -> None:
    model = MODELS["forest"]().fit(ROWS, CLICKS)  # float32 thresholds: differs past 1e-12

    with pytest.raises(ArtifactRejected, match=r"differ .* by up to [0-9.e-]+ on 2000 probe rows"):
        compiled_and_info(model, tolerance=1e-12)


def test_bytes_that_are_not_an_onnx_model_are_refused() -> None:
    with pytest.raises(ArtifactRejected, match="ONNX model does not load"):
        onnx_score_function(b"not a model", "classifier", threads=1)


def test_the_reference_rows_are_the_probe_when_given() -> None:
    reference = feature_rows(3000, seed=1)

    probe = probe_rows(LogisticRegression(), FeatureSchema.numbers(FEATURES), reference)

    assert np.array_equal(probe, reference[:PROBE_ROWS])


def test_without_a_reference_probes_stay_within_the_ranges_the_model_shows() -> None:
    scaled = make_pipeline(StandardScaler(), LogisticRegression()).fit(ROWS * 10 + 5, CLICKS)
    forest = MODELS["forest"]().fit(ROWS, CLICKS)

    low, high = feature_ranges(scaled, len(FEATURES))
    assert np.allclose((low + high) / 2, (ROWS * 10 + 5).mean(axis=0))
    low, high = feature_ranges(forest, len(FEATURES))
    cuts = np.concatenate([t.tree_.threshold[t.tree_.feature == 0] for t in forest.estimators_])
    assert low[0] < cuts.min() and cuts.max() < high[0]
    assert high[0] - low[0] < 1.25 * (cuts.max() - cuts.min()) + 1e-2
    low, high = feature_ranges(LogisticRegression().fit(ROWS, CLICKS), len(FEATURES))
    assert (low == -DEFAULT_RANGE).all() and (high == DEFAULT_RANGE).all()


@pytest.mark.parametrize(
    ("joblib_us", "onnx_us", "faster"), [(6.2, 3.2, "onnx"), (1.1, 1.3, "joblib")]
)
def test_the_faster_runtime_is_the_one_with_the_lower_cost(
    joblib_us: float, onnx_us: float, faster: str
) -> None:
    assert Compiled(b"", 21, 0.0, 2000, joblib_us, onnx_us, "nan").faster == faster


def test_without_the_onnx_extra_both_sides_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = MODELS["logistic regression"]().fit(ROWS, CLICKS)
    compiled, info = compiled_and_info(model)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "skl2onnx", None)

    with pytest.raises(ArtifactRejected, match=r"needs onnxruntime: .*scorer-worker\[onnx\]"):
        onnx_score_function(compiled.data, info.kind, threads=1)
    with pytest.raises(ArtifactRejected, match=r"needs skl2onnx: .*scorer-worker\[onnx\]"):
        compile_estimator(model, info, ROWS, 1e-5)
