"""Synthetic ad-click events at a steady rate, optionally with a fraction of malformed ones.

Profiles: `ads`, 20 numbers (synthetic.py); `ctr`, Criteo's shape of 13 counts and 26 hashed
categories with missing values (ctr.py). Formats: JSON, or Avro records in the Confluent wire
format under a schema registered for the topic (avro_events.py)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from kafka import KafkaProducer
from tqdm import tqdm

from worker.tools.avro_events import Encode, malformed_record
from worker.tools.ctr import ctr_event_bytes, ctr_frame, event_features, malformed_ctr_event
from worker.tools.synthetic import FEATURES, event_bytes, feature_rows, malformed_event

_CHUNK = 1000
Profile = Literal["ads", "ctr"]
PROFILES: tuple[Profile, ...] = ("ads", "ctr")
# one chunk's events: (event_id, index) -> bytes, good and malformed
Encoders = tuple[Callable[[str, int], bytes], Callable[[str, int], bytes]]


@dataclass
class LoadgenResult:
    good_ids: list[str] = field(default_factory=list)
    bad_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return len(self.good_ids) + len(self.bad_ids)


def generate(
    producer: KafkaProducer,
    topic: str,
    count: int,
    *,
    rate: float = 0.0,
    bad_fraction: float = 0.0,
    id_prefix: str = "e",
    seed: int = 0,
    progress: bool = True,
    profile: Profile = "ads",
    avro: tuple[int, Encode] | None = None,
) -> LoadgenResult:
    """Send `count` events keyed by event_id; rate 0 means as fast as possible. `avro`: the
    registered schema's id and its encoder (avro_events.avro_encoder), else JSON."""
    chooser = random.Random(seed)
    result = LoadgenResult()
    started = time.monotonic()
    with tqdm(total=count, unit="ev", disable=not progress, mininterval=0.5) as bar:
        for chunk_start in range(0, count, _CHUNK):
            size = min(_CHUNK, count - chunk_start)
            good, bad = _encoders(profile, size, seed + chunk_start, avro)
            for offset in range(size):
                index = chunk_start + offset
                event_id = f"{id_prefix}-{index}"
                if chooser.random() < bad_fraction:
                    value = bad(event_id, index)
                    result.bad_ids.append(event_id)
                else:
                    value = good(event_id, offset)
                    result.good_ids.append(event_id)
                producer.send(topic, key=event_id.encode(), value=value)
                if rate > 0:
                    _pace(started, index + 1, rate)
            bar.update(size)
    producer.flush()
    result.seconds = time.monotonic() - started
    return result


def _encoders(
    profile: Profile, size: int, seed: int, avro: tuple[int, Encode] | None = None
) -> Encoders:
    """How one chunk's good events (by their offset in it) and malformed ones are made."""
    if avro is not None:
        schema_id, encode = avro
        rows = _feature_rows(profile, size, seed)
        return (
            lambda event_id, offset: encode(event_id, rows[offset]),
            lambda event_id, index: malformed_record(
                encode(event_id, rows[index % size]), schema_id, index
            ),
        )
    if profile == "ctr":
        ctr_rows = event_features(ctr_frame(size, seed))
        return (
            lambda event_id, offset: ctr_event_bytes(event_id, ctr_rows[offset]),
            lambda event_id, index: malformed_ctr_event(event_id, index, ctr_rows[index % size]),
        )
    numbers = feature_rows(size, seed)
    return lambda event_id, offset: event_bytes(event_id, numbers[offset]), malformed_event


def _feature_rows(profile: Profile, size: int, seed: int) -> list[dict[str, object]]:
    """Each event's features as its JSON form holds them (None where missing)."""
    if profile == "ctr":
        return event_features(ctr_frame(size, seed))
    return [dict(zip(FEATURES, row, strict=True)) for row in feature_rows(size, seed).tolist()]


def _pace(started: float, sent: int, rate: float) -> None:
    ahead_s = sent / rate - (time.monotonic() - started)
    if ahead_s > 0.005:
        time.sleep(ahead_s)
