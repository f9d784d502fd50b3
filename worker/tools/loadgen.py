"""Synthetic ad-click events at a steady rate, optionally with a fraction of malformed ones."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from kafka import KafkaProducer
from tqdm import tqdm

from worker.tools.synthetic import event_bytes, feature_rows, malformed_event

_CHUNK = 1000


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
) -> LoadgenResult:
    """Send `count` events keyed by event_id; rate 0 means as fast as possible."""
    chooser = random.Random(seed)
    result = LoadgenResult()
    started = time.monotonic()
    with tqdm(total=count, unit="ev", disable=not progress, mininterval=0.5) as bar:
        for chunk_start in range(0, count, _CHUNK):
            rows = feature_rows(min(_CHUNK, count - chunk_start), seed + chunk_start)
            for offset, row in enumerate(rows):
                index = chunk_start + offset
                event_id = f"{id_prefix}-{index}"
                if chooser.random() < bad_fraction:
                    value = malformed_event(event_id, index)
                    result.bad_ids.append(event_id)
                else:
                    value = event_bytes(event_id, row)
                    result.good_ids.append(event_id)
                producer.send(topic, key=event_id.encode(), value=value)
                if rate > 0:
                    _pace(started, index + 1, rate)
            bar.update(len(rows))
    producer.flush()
    result.seconds = time.monotonic() - started
    return result


def _pace(started: float, sent: int, rate: float) -> None:
    ahead_s = sent / rate - (time.monotonic() - started)
    if ahead_s > 0.005:
        time.sleep(ahead_s)
