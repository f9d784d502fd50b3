"""The column plan: a ColumnTransformer's encoders as lookups, taken only where it scores as the
Pipeline does, on every kind of value: known, unseen, missing."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from worker.models.features import CATEGORY, NUMBER, FeatureSchema
from worker.models.plan import column_plan
from worker.models.scoring import score_function
from worker.stream.events import Limits, decode_batch

SCHEMA = FeatureSchema(("n", "m", "c", "d"), (NUMBER, NUMBER, CATEGORY, CATEGORY), True, "frame")


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "n": rng.normal(size=n),
            "m": rng.poisson(2, size=n).astype(float),
            "c": rng.choice(["a", "b", "c", "d"], size=n).astype(object),
            "d": rng.choice(["x", "y", "z"], size=n).astype(object),
        }
    )
    data.loc[rng.random(n) < 0.1, "n"] = np.nan
    data.loc[rng.random(n) < 0.1, "c"] = np.nan
    return data


TRAIN = frame(400, 1)
LABELS = (TRAIN["d"] == "x").to_numpy() ^ (np.arange(400) % 5 == 0)


def numbers() -> Any:
    return make_pipeline(SimpleImputer(), StandardScaler())


PLANNED = {
    "one-hot sparse": lambda: make_pipeline(
        ColumnTransformer(
            [
                ("n", numbers(), ["n", "m"]),
                ("c", OneHotEncoder(handle_unknown="ignore"), ["c", "d"]),
            ]
        ),
        LogisticRegression(),
    ),
    "one-hot dense": lambda: make_pipeline(
        ColumnTransformer(
            [
                ("c", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["c", "d"]),
                ("n", SimpleImputer(strategy="median"), ["n", "m"]),
            ]
        ),
        LogisticRegression(),
    ),
    "ordinal, remainder": lambda: make_pipeline(
        ColumnTransformer(
            [
                (
                    "c",
                    OrdinalEncoder(
                        handle_unknown="use_encoded_value",
                        unknown_value=-1,
                        encoded_missing_value=-2,
                    ),
                    ["c", "d"],
                )
            ],
            remainder="passthrough",
        ),
        HistGradientBoostingClassifier(max_iter=10),
    ),
}
NOT_PLANNED = {
    "infrequent categories": lambda: make_pipeline(
        ColumnTransformer(
            [("c", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=80), ["c"])]
        ),
        LogisticRegression(),
    ),
    "unknown raises": lambda: make_pipeline(
        ColumnTransformer([("c", OneHotEncoder(handle_unknown="error"), ["c", "d"])]),
        LogisticRegression(),
    ),
    "a dropped category": lambda: make_pipeline(
        ColumnTransformer(
            [("c", OneHotEncoder(drop="first", handle_unknown="ignore"), ["c", "d"])]
        ),
        LogisticRegression(),
    ),
}


def decoded(data: pd.DataFrame) -> np.ndarray:
    """Rows as the worker decodes them from JSON events, a value never seen in each column."""
    records = data.astype(object).where(data.notna(), None).to_dict("records")
    records[0]["c"], records[1]["d"] = "never-seen", "unheard-of"
    values = [orjson.dumps({"event_id": i, "features": r}) for i, r in enumerate(records)]
    batch = decode_batch(values, SCHEMA, Limits(100_000))
    assert batch.rejects == []
    return batch.matrix


@pytest.mark.parametrize("name", sorted(PLANNED))
def test_a_plan_scores_exactly_as_the_pipeline_on_known_unseen_and_missing_values(
    name: str,
) -> None:
    model = PLANNED[name]().fit(TRAIN, LABELS)
    assert column_plan(model, SCHEMA, model.predict_proba) is not None
    matrix = decoded(frame(300, 2))
    ours = score_function(model, "classifier", SCHEMA)(matrix)
    theirs = model.predict_proba(SCHEMA.frame(matrix))[:, 1]
    assert np.abs(ours - theirs).max() <= 1e-12


@pytest.mark.parametrize("name", sorted(NOT_PLANNED))
def test_encoders_the_plan_cannot_copy_are_left_to_scikit_learn(name: str) -> None:
    model = NOT_PLANNED[name]().fit(TRAIN.fillna({"c": "a"}), LABELS)
    assert column_plan(model, SCHEMA, model.predict_proba) is None


def test_a_plan_that_would_score_differently_is_not_taken() -> None:
    model = PLANNED["one-hot sparse"]().fit(TRAIN, LABELS)
    shifted = lambda rows: model.predict_proba(rows) + 1e-9  # noqa: E731
    assert column_plan(model, SCHEMA, shifted) is None


def test_no_plan_for_an_estimator_without_a_column_transformer_first() -> None:
    plain = LogisticRegression().fit(TRAIN[["m"]], LABELS)
    assert column_plan(plain, FeatureSchema.numbers(("m",)), plain.predict_proba) is None


def test_columns_chosen_by_slice_are_left_to_the_pipeline_not_a_crash() -> None:
    model = make_pipeline(
        ColumnTransformer(
            [
                ("n", numbers(), slice("n", "m")),
                ("c", OneHotEncoder(handle_unknown="ignore"), ["c", "d"]),
            ]
        ),
        LogisticRegression(),
    ).fit(TRAIN, LABELS)
    assert column_plan(model, SCHEMA, model.predict_proba) is None
    matrix = decoded(frame(50, 3))
    scores = score_function(model, "classifier", SCHEMA)(matrix)
    assert np.abs(scores - model.predict_proba(SCHEMA.frame(matrix))[:, 1]).max() == 0
