"""Feature kinds, missing values and input forms: learnt at publish from the operator, the
fitted Pipeline or the default, proved on probe rows through the worker's own scoring path,
and stored with the entry."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from worker.errors import ArtifactRejected
from worker.models.entry import META_FIELDS, RegistryEntry, decode_entry, encode_entry
from worker.models.features import (
    CATEGORY,
    NUMBER,
    FeatureSchema,
    estimator_kinds,
    parse_kinds,
    resolve_kinds,
)
from worker.models.probe import probe_version
from worker.models.scoring import score_function
from worker.stream.events import Limits, decode_batch
from worker.tools.ctr import CATEGORIES, COUNTS, FEATURES, PIPELINES, ctr_frame, event_features

KINDS = (NUMBER,) * len(COUNTS) + (CATEGORY,) * len(CATEGORIES)


@pytest.fixture(scope="module")
def fitted() -> dict[str, Any]:
    frame = ctr_frame(800, seed=3)
    labels = (np.arange(len(frame)) % 3 == 0).astype(int)
    return {name: make().fit(frame, labels) for name, make in PIPELINES.items()}


def test_a_kinds_spec_parses_and_refuses_what_it_cannot_read() -> None:
    assert parse_kinds("I1:number, C1:category,") == {"I1": "number", "C1": "category"}
    with pytest.raises(ValueError, match="unknown kind 'text'"):
        parse_kinds("C1:text")
    with pytest.raises(ValueError, match="'C1' is not NAME:KIND"):
        parse_kinds("C1")


def test_kinds_come_from_the_operator_then_the_estimator_then_number() -> None:
    kinds = resolve_kinds(("a", "b", "c"), {"a": "category"}, {"a": "number", "b": "category"})
    assert kinds == ("category", "category", "number")
    with pytest.raises(ArtifactRejected, match="names 'z', not features of this version"):
        resolve_kinds(("a", "b"), {"z": "number"})


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_a_pipeline_fitted_on_a_dataframe_reveals_its_category_columns(
    fitted: dict[str, Any], name: str
) -> None:
    kinds = estimator_kinds(fitted[name])
    assert [kinds[f] for f in FEATURES] == list(KINDS)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_each_ctr_pipeline_is_served_as_a_frame_taking_missing_values(
    fitted: dict[str, Any], name: str
) -> None:
    probed = probe_version(fitted[name], "classifier", FEATURES, KINDS)
    assert probed.schema == FeatureSchema(FEATURES, KINDS, True, "frame")
    known = probed.warm_up_row[len(COUNTS)]
    # a category its encoder knows; a hashed column has no encoder to ask
    assert isinstance(known, str) and (known or name == "ctr-hashed")


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_scores_equal_the_pipelines_own_on_a_dataframe_built_by_hand(
    fitted: dict[str, Any], name: str
) -> None:
    """Missing values, a category never seen and an absent feature included."""
    model = fitted[name]
    schema = probe_version(model, "classifier", FEATURES, KINDS).schema
    frame = ctr_frame(300, seed=11)
    rows = event_features(frame)
    rows[0]["C1"] = "never-seen"
    del rows[1]["I2"]
    values = [orjson.dumps({"event_id": i, "features": row}) for i, row in enumerate(rows)]
    batch = decode_batch(values, schema, Limits(100_000))
    assert batch.rejects == []
    by_hand = frame.copy()
    by_hand.loc[0, "C1"] = "never-seen"
    by_hand.loc[1, "I2"] = np.nan
    expected = model.predict_proba(by_hand)[:, 1]
    scores = score_function(model, "classifier", schema)(batch.matrix)
    assert np.abs(scores - expected).max() <= 1e-9


def test_a_model_that_cannot_take_missing_values_is_found_so_and_kept_from_accept() -> None:
    rows = np.random.default_rng(0).normal(size=(100, 2))
    model = LogisticRegression().fit(rows, rows[:, 0] > 0)
    probed = probe_version(model, "classifier", ("a", "b"), ("number", "number"))
    assert probed.schema == FeatureSchema.numbers(("a", "b"))
    with pytest.raises(ArtifactRejected, match="--missing accept, but this version cannot"):
        probe_version(model, "classifier", ("a", "b"), ("number", "number"), "accept")


def test_missing_reject_is_kept_for_a_model_that_could_take_them(fitted: dict[str, Any]) -> None:
    probed = probe_version(fitted["ctr-hgb"], "classifier", FEATURES, KINDS, "reject")
    assert not probed.schema.accepts_missing


def test_a_numbers_only_dataframe_fit_is_served_an_array_when_the_scores_are_the_same() -> None:
    frame = pd.DataFrame(np.random.default_rng(1).normal(size=(100, 2)), columns=["a", "b"])
    plain = LogisticRegression().fit(frame, frame["a"] > 0)
    assert probe_version(plain, "classifier", ("a", "b"), (NUMBER, NUMBER)).schema.form == "array"
    by_name = make_pipeline(
        ColumnTransformer([("scaled", StandardScaler(), ["a", "b"])]), LogisticRegression()
    ).fit(frame, frame["a"] > 0)
    assert probe_version(by_name, "classifier", ("a", "b"), (NUMBER, NUMBER)).schema.form == "frame"


def test_a_version_no_worker_could_warm_up_is_refused_naming_why(fitted: dict[str, Any]) -> None:
    """A category column declared a number: the encoder fitted on text refuses a float."""
    wrong = (NUMBER,) * len(FEATURES)
    with pytest.raises(ArtifactRejected, match="a worker could not warm this version up"):
        probe_version(fitted["ctr-onehot"], "classifier", FEATURES, wrong)


def test_a_step_that_makes_nan_from_the_warm_up_row_is_refused() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0]})
    ratio = make_pipeline(FunctionTransformer(lambda x: x / x), LogisticRegression())
    ratio.fit(frame, [0, 1, 0, 1])  # 0 / 0 is NaN: the zero warm-up row scores no number
    with pytest.raises(
        ArtifactRejected, match="as frame failed: ValueError: Input X contains NaN"
    ) as refused:
        probe_version(ratio, "classifier", ("a",), ("number",))
    assert "\n" not in str(refused.value)


def entry(**changes: Any) -> RegistryEntry:
    base = RegistryEntry(
        "v1", "sha", "", ("a", "b"), "classifier", "x.Y", "1.9", "1.5", 1.0, "note"
    )
    return RegistryEntry(**{**base.__dict__, **changes})


def test_the_entry_keeps_kinds_missing_form_and_warm_up_row_through_redis_fields() -> None:
    stored = entry(
        feature_kinds=("number", "category"),
        accepts_missing=True,
        input_form="frame",
        warm_up_row=(0.0, "x"),
    )
    fields = encode_entry(stored)
    assert orjson.loads(fields["feature_kinds"]) == {"a": "number", "b": "category"}  # type: ignore[arg-type]
    read = decode_entry("v1", [fields[name] for name in META_FIELDS])  # type: ignore[misc]
    assert read == stored and read.checked
    assert read.summary()["feature_kinds"] == {"a": "number", "b": "category"}


def test_an_entry_from_before_kinds_reads_as_numbers_only_and_unchecked() -> None:
    fields = encode_entry(entry())
    old = [fields[name] if name in _OLD_FIELDS else None for name in META_FIELDS]
    read = decode_entry("v1", old)  # type: ignore[arg-type]
    assert read.schema == FeatureSchema.numbers(("a", "b")) and not read.checked
    assert read.summary()["feature_kinds"] == {"a": "number", "b": "number"}


_OLD_FIELDS = {"sha256", "signature", "features", "kind", "estimator_class", "sklearn_version"}


def test_an_entry_whose_kinds_do_not_name_its_features_is_corrupt() -> None:
    fields = encode_entry(entry())
    fields["feature_kinds"] = orjson.dumps({"a": "number"})
    with pytest.raises(Exception, match="corrupt"):
        decode_entry("v1", [fields[name] for name in META_FIELDS])  # type: ignore[misc]


def test_an_estimator_that_refuses_nan_is_found_not_to_take_missing_values() -> None:
    """The probe scores with scikit-learn's own checks on: a worker's unchecked call would
    give a gradient boosting's NaN row a meaningless finite score."""
    rows = np.random.default_rng(0).normal(size=(200, 3))
    model = GradientBoostingClassifier(n_estimators=5).fit(rows, rows[:, 0] > 0)
    probed = probe_version(model, "classifier", ("a", "b", "c"), (NUMBER,) * 3)
    assert not probed.schema.accepts_missing
    with pytest.raises(
        ArtifactRejected, match="cannot score them: ValueError: Input X contains NaN"
    ):
        probe_version(model, "classifier", ("a", "b", "c"), (NUMBER,) * 3, "accept")


def test_integer_codes_in_an_object_column_are_numbers_and_text_is_a_category() -> None:
    codes = pd.DataFrame({"banner_pos": pd.Series([0, 1, 7, 1] * 50, dtype=object)})
    encoder = make_pipeline(
        ColumnTransformer([("c", OneHotEncoder(handle_unknown="ignore"), ["banner_pos"])]),
        LogisticRegression(),
    ).fit(codes, [0, 1] * 100)
    assert estimator_kinds(encoder) == {"banner_pos": "number"}


def test_categories_fitted_with_none_for_missing_are_given_none() -> None:
    """An object column built from JSON records holds None, not NaN, and its encoder learnt
    None as a category: a missing value must reach it as None to be that category."""
    frame = pd.DataFrame(
        {"c": pd.Series(["a", "b", None, "a"] * 50, dtype=object), "n": np.arange(200.0)}
    )
    labels = (frame["c"].isna() | (frame["n"] % 3 == 0)).to_numpy()
    model = make_pipeline(
        ColumnTransformer(
            [("c", OneHotEncoder(handle_unknown="ignore"), ["c"])], remainder=SimpleImputer()
        ),
        LogisticRegression(max_iter=500),
    ).fit(frame, labels)
    schema = probe_version(model, "classifier", ("c", "n"), (CATEGORY, NUMBER)).schema
    assert schema.accepts_missing
    events = [{"c": None, "n": 3.0}, {"c": "b", "n": 1.0}, {"n": 2.0}]
    values = [orjson.dumps({"event_id": i, "features": f}) for i, f in enumerate(events)]
    batch = decode_batch(values, schema, Limits(10_000))
    by_hand = pd.DataFrame({"c": pd.Series([None, "b", None], dtype=object), "n": [3.0, 1.0, 2.0]})
    expected = model.predict_proba(by_hand)[:, 1]
    scores = score_function(model, "classifier", schema)(batch.matrix)
    assert np.abs(scores - expected).max() <= 1e-9
