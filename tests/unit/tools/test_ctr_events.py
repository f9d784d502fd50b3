"""The CTR profile's events (loadgen --profile ctr, the ctr demo): what a CTR Pipeline's
version decodes, with missing values, and malformed ones it dead-letters every time."""

from __future__ import annotations

import orjson

from worker.models.features import CATEGORY, NUMBER, FeatureSchema
from worker.stream.events import Limits, decode_batch
from worker.tools.ctr import CATEGORIES, COUNTS, FEATURES, clicks, ctr_frame
from worker.tools.loadgen import _encoders

SCHEMA = FeatureSchema(FEATURES, (NUMBER,) * 13 + (CATEGORY,) * 26, accepts_missing=True)


def test_good_events_decode_with_their_missing_values_and_malformed_ones_never_do() -> None:
    good, bad = _encoders("ctr", 400, seed=5)
    decoded = decode_batch([good(f"e-{i}", i) for i in range(400)], SCHEMA, Limits(100_000))
    assert decoded.rejects == [] and decoded.matrix.shape == (400, 39)
    missing = [v is None for v in decoded.matrix.ravel()]
    assert 0.02 < sum(missing) / len(missing) < 0.2  # 20 % of counts, 5 % of categories
    malformed = decode_batch([bad(f"b-{i}", i) for i in range(60)], SCHEMA, Limits(100_000))
    assert malformed.accepted == [] and len(malformed.rejects) == 60
    assert {r.reason for r in malformed.rejects} == {
        "invalid_category",
        "category_too_long",
        "non_numeric_feature",
        "invalid_json",
    }


def test_categories_are_skewed_and_clicks_follow_the_known_probability() -> None:
    frame = ctr_frame(5000, seed=2)
    top = frame["C1"].value_counts(normalize=True)
    assert top.iloc[0] > 10 * top.iloc[50]  # Zipf-like: the head dominates
    assert set(frame.columns) == set(COUNTS) | set(CATEGORIES)
    rate = clicks(frame, seed=2).mean()
    assert 0.1 < rate < 0.4
    first = orjson.loads(_encoders("ctr", 3, seed=2)[0]("e-0", 0))
    assert set(first["features"]) == set(FEATURES)
