"""CTR-like synthetic events, shaped after the public click-through data sets (Criteo's 13
integer counts and 26 hashed categorical fields): hex-string categories with Zipf-like
frequencies, Poisson counts, values missing at realistic rates, and clicks drawn from a known
probability. Also the three scikit-learn Pipelines a team would fit on them.

Every value in an event is what a pipeline would send: a count as a JSON number, a category
as a string, a missing value as null (or absent).
"""

from __future__ import annotations

import math
import time
import zlib
from typing import Any

import numpy as np
import orjson

COUNTS = tuple(f"I{i}" for i in range(1, 14))
CATEGORIES = tuple(f"C{i}" for i in range(1, 27))
FEATURES = COUNTS + CATEGORIES
COUNT_MISSING, CATEGORY_MISSING = 0.2, 0.05  # shares of values missing
_CARDINALITY = 400  # distinct values per categorical field
_ZIPF = 1.2  # frequency of the k-th most common value ~ 1 / k**_ZIPF


def ctr_frame(n: int, seed: int = 0) -> Any:
    """n events as a DataFrame (NaN where missing): float counts, string categories."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for j, name in enumerate(COUNTS):
        counts = rng.poisson(1.0 + j % 5, size=n).astype(np.float64)
        counts[rng.random(n) < COUNT_MISSING] = np.nan
        columns[name] = counts
    ranks = np.arange(1, _CARDINALITY + 1)
    weights = 1 / ranks**_ZIPF
    for name in CATEGORIES:
        values = np.array([_hashed(name, int(k)) for k in ranks], dtype=np.object_)
        picked = values[rng.choice(_CARDINALITY, size=n, p=weights / weights.sum())]
        picked[rng.random(n) < CATEGORY_MISSING] = np.nan
        columns[name] = picked
    return pd.DataFrame(columns, columns=list(FEATURES))


def click_probability(frame: Any) -> np.ndarray:
    """The true click probability behind `clicks`: each count's log and each category value
    move the logit by a fixed, hash-derived amount; a missing value moves it by nothing."""
    logit = np.full(len(frame), -1.8)
    for j, name in enumerate(COUNTS):
        logit += np.nan_to_num(np.log1p(frame[name].to_numpy(dtype=float))) * (0.3 - 0.05 * j)
    for name in CATEGORIES[:8]:  # the first eight fields carry the signal
        logit += np.array([_effect(name, v) for v in frame[name]])
    probability: np.ndarray = 1 / (1 + np.exp(-logit))
    return probability


def clicks(frame: Any, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    return (rng.random(len(frame)) < click_probability(frame)).astype(int)


def event_features(frame: Any) -> list[dict[str, object]]:
    """Each row as an event's `features` object: None where missing, counts as ints."""
    rows = []
    for record in frame.to_dict("records"):
        rows.append({name: _json_value(value) for name, value in record.items()})
    return rows


def _json_value(value: object) -> object:
    if isinstance(value, float):
        return None if math.isnan(value) else int(value)
    return value


def _hashed(name: str, rank: int) -> str:
    return f"{zlib.crc32(f'{name}:{rank}'.encode()):08x}"


def _effect(name: str, value: object) -> float:
    if not isinstance(value, str):
        return 0.0
    return (zlib.crc32(f"{name}={value}".encode()) % 1000) / 1000 * 1.6 - 0.8


def onehot_pipeline() -> Any:
    """(a): imputed, scaled counts and one-hot categories (unknown ones ignored) into a
    logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = ColumnTransformer(
        [
            ("counts", make_pipeline(SimpleImputer(), StandardScaler()), list(COUNTS)),
            ("categories", OneHotEncoder(handle_unknown="ignore"), list(CATEGORIES)),
        ]
    )
    return make_pipeline(columns, LogisticRegression(max_iter=500))


def hgb_pipeline() -> Any:
    """(b): ordinal-coded categories (unknown: -1) and the counts with their NaN, into a
    histogram gradient boosting, which takes missing values as they are."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    columns = ColumnTransformer(
        [
            (
                "categories",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                list(CATEGORIES),
            ),
        ],
        remainder="passthrough",
    )
    return make_pipeline(columns, HistGradientBoostingClassifier(max_iter=50, random_state=0))


def hashed_pipeline() -> Any:
    """(c): the hashing trick (worker.models.recipes): `column=value` tokens hashed into 2**18
    columns beside the imputed counts, into a logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction import FeatureHasher
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from worker.models.recipes import hashed_tokens

    hashed = make_pipeline(
        FunctionTransformer(hashed_tokens),
        FeatureHasher(n_features=2**18, input_type="string"),
    )
    columns = ColumnTransformer(
        [
            ("counts", make_pipeline(SimpleImputer(), StandardScaler()), list(COUNTS)),
            ("hashed", hashed, list(CATEGORIES)),
        ]
    )
    return make_pipeline(columns, LogisticRegression(max_iter=500))


PIPELINES = {"ctr-onehot": onehot_pipeline, "ctr-hgb": hgb_pipeline, "ctr-hashed": hashed_pipeline}


def train_ctr(name: str, n: int = 4000, seed: int = 0) -> Any:
    frame = ctr_frame(n, seed)
    return PIPELINES[name]().fit(frame, clicks(frame, seed))


def ctr_event_bytes(event_id: str, features: dict[str, object], ts: float | None = None) -> bytes:
    return orjson.dumps({"event_id": event_id, "ts": ts or time.time(), "features": features})


_MALFORMED_VALUES: tuple[dict[str, object], ...] = (
    {"C1": ["68fd1e64"]},  # invalid_category
    {"C2": 17},  # invalid_category
    {"C3": "x" * 300},  # category_too_long
    {"I1": "3"},  # non_numeric_feature
    {"I2": True},  # non_numeric_feature
)


def malformed_ctr_event(event_id: str, variant: int, features: dict[str, object]) -> bytes:
    """A CTR event with one wrong value, or broken bytes: each must be dead-lettered."""
    if variant % (len(_MALFORMED_VALUES) + 1) == len(_MALFORMED_VALUES):
        return b'{"event_id": "' + event_id.encode() + b'", "features": {'
    return ctr_event_bytes(event_id, features | _MALFORMED_VALUES[variant % len(_MALFORMED_VALUES)])
