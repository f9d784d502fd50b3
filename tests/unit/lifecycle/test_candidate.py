"""A candidate's split, fit and judgement, on synthetic rows with a known truth."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier

from worker.lifecycle.candidate import Rejection, fit_candidate, judge_on_holdout, split_by_time
from worker.lifecycle.retraining import auto_version
from worker.lifecycle.training_rows import Matrix, Rows
from worker.models.features import CATEGORY, NUMBER, FeatureSchema
from worker.tools import ctr
from worker.tools.synthetic import FEATURES, click_labels, feature_rows

SCHEMA = FeatureSchema.numbers(FEATURES)


def _matrix(n: int = 3000, seed: int = 0) -> Matrix:
    x = feature_rows(n, seed)
    ts = np.random.default_rng(seed).permutation(n).astype(float)  # arrival order is not time
    return Matrix(x, click_labels(x, seed).astype(float), ts, 0)


def test_the_holdout_is_the_newest_share_of_the_window_by_event_time() -> None:
    matrix = _matrix(1000)
    split = split_by_time(matrix, 0.25)
    assert split is not None
    assert (len(split.train_y), len(split.holdout_y)) == (750, 250)
    assert split.train_span == (0.0, 749.0) and split.holdout_span == (750.0, 999.0)
    newest = np.argsort(matrix.ts)[750:]
    assert np.array_equal(np.sort(split.holdout_x, axis=0), np.sort(matrix.x[newest], axis=0))


def test_no_split_when_either_side_lacks_a_class() -> None:
    matrix = _matrix(400)
    ones = Matrix(matrix.x, np.ones(400), matrix.ts, 0)
    assert split_by_time(ones, 0.25) is None
    late_clicks_only = Matrix(matrix.x, (matrix.ts >= 300).astype(float), matrix.ts, 0)
    assert split_by_time(late_clicks_only, 0.25) is None


def test_refit_clones_the_active_estimators_class_and_parameters() -> None:
    matrix = _matrix()
    active = LogisticRegression(C=0.3, max_iter=321).fit(matrix.x[:100], matrix.y[:100])
    candidate, method = fit_candidate(active, "refit", matrix.x, matrix.y, SCHEMA)
    assert method == "refit" and candidate is not active
    assert candidate.get_params() == active.get_params()
    assert not np.allclose(candidate.coef_, active.coef_)


def test_partial_fit_updates_a_copy_and_falls_back_to_refit_without_it() -> None:
    matrix = _matrix()
    sgd = SGDClassifier(loss="log_loss", random_state=0).fit(matrix.x[:100], matrix.y[:100])
    before = sgd.coef_.copy()
    updated, method = fit_candidate(sgd, "partial_fit", matrix.x, matrix.y, SCHEMA)
    assert method == "partial_fit" and np.array_equal(sgd.coef_, before)  # the active is untouched
    assert not np.allclose(updated.coef_, before)
    logistic = LogisticRegression().fit(matrix.x[:100], matrix.y[:100])
    assert fit_candidate(logistic, "partial_fit", matrix.x, matrix.y, SCHEMA)[1] == "refit"


def test_a_better_candidate_passes_and_an_equal_one_does_not() -> None:
    matrix = _matrix(6000)
    split = split_by_time(matrix, 0.3)
    assert split is not None
    shuffled = np.random.default_rng(1).permutation(split.train_y)
    broken = LogisticRegression().fit(split.train_x, shuffled)
    good = LogisticRegression().fit(split.train_x, split.train_y)
    holdout, why_not = judge_on_holdout(good, broken, split, 0.5, SCHEMA)
    assert why_not is None and holdout.comparison.verdict == "better"
    assert holdout.rows == 1800 and holdout.candidate.labelled == 1800
    _, why_not = judge_on_holdout(good, good, split, 0.5, SCHEMA)
    assert why_not == Rejection.NOT_BETTER


def test_rows_missing_a_feature_or_a_binary_label_are_left_out_and_counted() -> None:
    rows = Rows(
        ["a", "b", "c", "d", "e"],
        np.array([1.0, 2.0, 3.0, 4.0, 5.0]),
        np.array([1.0, 0.0, 1.0, 0.5, 0.0]),
        [
            {"f0": 1, "f1": 2.5},
            {"f0": 3},
            {"f0": "x", "f1": 1},
            {"f0": 1, "f1": 1},
            {"f1": 4, "f0": 2},
        ],
    )
    matrix = rows.matrix(FeatureSchema.numbers(("f0", "f1")))
    assert matrix.x.tolist() == [[1.0, 2.5], [2.0, 4.0]]
    assert matrix.y.tolist() == [1.0, 0.0] and matrix.ts.tolist() == [1.0, 5.0]
    assert matrix.incomplete == 3


@pytest.mark.parametrize(
    ("at", "name"),
    [(1_764_590_400.0, "auto-20251201T120000"), (1_764_590_459.9, "auto-20251201T120059")],
)
def test_automatic_versions_are_named_by_their_utc_fit_time(at: float, name: str) -> None:
    assert auto_version(at) == name


def test_rows_keep_categories_and_missing_values_for_a_version_that_takes_them() -> None:
    rows = Rows(
        ["a", "b", "c", "d"],
        np.array([1.0, 2.0, 3.0, 4.0]),
        np.array([1.0, 0.0, 1.0, 0.0]),
        [{"n": 1, "c": "x"}, {"n": None, "c": "y"}, {"c": None}, {"n": 2, "c": 5}],
    )
    mixed = FeatureSchema(("n", "c"), (NUMBER, CATEGORY), accepts_missing=True)
    matrix = rows.matrix(mixed)
    assert matrix.x.tolist() == [[1, "x"], [None, "y"], [None, None]]
    assert matrix.incomplete == 1  # a number where the category was expected
    assert rows.matrix(FeatureSchema(("n", "c"), (NUMBER, CATEGORY))).x.tolist() == [[1, "x"]]
    wrong = Rows(
        ["e", "f", "g", "h"],
        np.arange(4.0),
        np.array([1.0, 0.0, 1.0, 0.0]),
        [{"n": True, "c": "x"}, {"n": {}, "c": "x"}, {"n": 1, "c": "x" * 300}, {"n": 1, "c": "y"}],
    )
    kept = wrong.matrix(mixed)  # what a worker dead-letters is no training row either
    assert kept.x.tolist() == [[1, "y"]] and kept.incomplete == 3
    assert wrong.matrix(mixed, max_category_chars=300).incomplete == 2


def test_a_pipeline_fitted_on_a_dataframe_is_refitted_on_one_and_judged_as_it_scores() -> None:
    frame = ctr.ctr_frame(3000, seed=4)
    labels = ctr.clicks(frame, seed=4).astype(float)
    schema = FeatureSchema(ctr.FEATURES, (NUMBER,) * 13 + (CATEGORY,) * 26, True, "frame")
    rows = Rows(
        [str(i) for i in range(3000)],
        np.arange(3000.0),
        labels,
        ctr.event_features(frame),
    )
    matrix = rows.matrix(schema)
    assert matrix.incomplete == 0
    split = split_by_time(matrix, 0.3)
    assert split is not None
    active = ctr.onehot_pipeline().fit(frame.iloc[:200], labels[:200])
    candidate, method = fit_candidate(active, "refit", split.train_x, split.train_y, schema)
    assert method == "refit" and list(candidate.feature_names_in_) == list(ctr.FEATURES)
    holdout, why_not = judge_on_holdout(candidate, active, split, 0.5, schema)
    assert holdout.rows == 900 and why_not is None
