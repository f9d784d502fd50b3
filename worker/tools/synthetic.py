"""Synthetic ad-click data: feature events, malformed events, and small trained models.

Shared by loadgen, the demo, the benchmark and the tests, so they all score the same shape.
"""

from __future__ import annotations

import time
from pathlib import Path

import joblib
import numpy as np
import orjson
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

N_FEATURES = 20
FEATURES = tuple(f"f{i}" for i in range(N_FEATURES))
_TRUE_WEIGHTS = np.linspace(-1.5, 1.5, N_FEATURES)
# the drift scenario's: the two strongest weights (f0's and f19's) change sign
DRIFTED_WEIGHTS = _TRUE_WEIGHTS * np.where(
    np.isin(np.arange(N_FEATURES), [0, N_FEATURES - 1]), -1, 1
)


def feature_rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, N_FEATURES)).round(4)


def click_labels(rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """About 1 in 8 positive: a logistic signal with noise, like a click-through rate."""
    noise = np.random.default_rng(seed + 1).logistic(size=len(rows))
    return (_click_logits(rows) + noise > 0).astype(int)


def click_probability(rows: np.ndarray, weights: np.ndarray = _TRUE_WEIGHTS) -> np.ndarray:
    """The true click probability behind `click_labels` (logistic noise: the sigmoid), or
    behind another set of weights (the drift scenario's)."""
    probability: np.ndarray = 1 / (1 + np.exp(-_click_logits(rows, weights)))
    return probability


def _click_logits(rows: np.ndarray, weights: np.ndarray = _TRUE_WEIGHTS) -> np.ndarray:
    logits: np.ndarray = rows @ weights / 2 - 2.0
    return logits


def train(kind: str, n: int = 4000, seed: int = 0) -> object:
    rows = feature_rows(n, seed)
    labels = click_labels(rows, seed)
    model = {
        "logistic": lambda: LogisticRegression(max_iter=500),
        "gbm": lambda: GradientBoostingClassifier(n_estimators=50, max_depth=3, random_state=seed),
        "forest": lambda: RandomForestClassifier(
            n_estimators=100, max_depth=8, n_jobs=1, random_state=seed
        ),
    }[kind]()
    return model.fit(rows, labels)


def save_model(kind: str, path: Path, seed: int = 0) -> Path:
    joblib.dump(train(kind, seed=seed), path)
    return path


def event_bytes(event_id: str, row: np.ndarray, ts: float | None = None) -> bytes:
    features = dict(zip(FEATURES, row.tolist(), strict=True))
    return orjson.dumps({"event_id": event_id, "ts": ts or time.time(), "features": features})


_MALFORMED = (
    lambda eid: b"\xff\xfe not utf-8",
    lambda eid: b'{"event_id": "' + eid.encode() + b'", "features": {',
    lambda eid: b"[1, 2, 3]",
    lambda eid: orjson.dumps({"features": {name: 0.0 for name in FEATURES}}),
    lambda eid: orjson.dumps({"event_id": eid, "features": {"f0": 1.0}}),
    lambda eid: orjson.dumps({"event_id": eid, "features": {name: "x" for name in FEATURES}}),
)


def malformed_event(event_id: str, variant: int) -> bytes:
    """One of several kinds of bad input, each of which must be dead-lettered."""
    return _MALFORMED[variant % len(_MALFORMED)](event_id)
