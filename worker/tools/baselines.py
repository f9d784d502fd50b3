"""The benchmark's reference points, each run as its own process like the worker itself.

- passthrough: the ceiling. Consume → produce the bytes unchanged → flush → commit, with the
  same Kafka client, settings and delivery order as the worker; no decoding, no model.
- tutorial: the per-event loop most examples show. json.loads, predict on one row, send.
- dataframe: the batched loop a team would write for a Pipeline fitted on a DataFrame: consume
  a batch, orjson each event, one DataFrame of their features, one predict_proba, produce each
  prediction, flush, commit.

`python -m worker.tools.baselines passthrough|tutorial|dataframe --limit N [--model FILE]`,
settings from the SCORER_* environment like `scorer run`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from typing import Any

import joblib

from worker.infra.clients import build_consumer, build_producer
from worker.settings import Settings, load_settings
from worker.stream.factory import scoring_consumer, scoring_producer
from worker.stream.heap import settle_heap
from worker.stream.transport import NoRebalanceWork, Partition, offsets_after


def passthrough(settings: Settings, limit: int, stopping: threading.Event) -> None:
    """Through the same transport the worker uses, so `kafka_client` picks the ceiling too,
    and with the worker's delivery order: one batch in flight, its acks awaited after the next
    poll, commits not waited for but the last (see worker/stream/loop.py)."""
    consumer = scoring_consumer(settings)
    producer = scoring_producer(settings)
    consumer.subscribe([settings.input_topic], NoRebalanceWork())
    settle_heap()  # as the worker does, so the ratio compares the scoring work alone
    moved, in_flight = 0, None
    delivered: dict[Partition, int] = {}
    commit_failures: list[str] = []
    while moved < limit and not stopping.is_set():
        records = consumer.poll_batch(settings.poll_timeout_ms, settings.batch_max_records)
        if in_flight and producer.flush(settings.delivery_timeout_s):
            raise SystemExit("passthrough: the broker did not acknowledge a batch")
        producer.send_many(
            settings.output_topic, [r.value for r in records], [r.key for r in records]
        )
        if in_flight:
            offsets = offsets_after(in_flight)
            delivered |= offsets
            consumer.commit_async(offsets, commit_failures.append)
        in_flight = records or None
        moved += len(records)
    if in_flight and not producer.flush(settings.delivery_timeout_s):
        delivered |= offsets_after(in_flight)
    consumer.commit(delivered, settings.delivery_timeout_s)
    consumer.close()
    producer.close()
    if commit_failures:
        raise SystemExit(f"passthrough: a commit failed: {commit_failures[0]}")


def tutorial(settings: Settings, limit: int, model_path: str, stopping: threading.Event) -> None:
    """Deliberately the naive shape: one event at a time, auto-commit, no batching."""
    model = joblib.load(model_path)
    features = [f"f{i}" for i in range(model.n_features_in_)]
    consumer = build_consumer(settings, enable_auto_commit=True, max_poll_records=1)
    producer = build_producer(settings)
    consumer.subscribe([settings.input_topic])
    done = 0
    while done < limit and not stopping.is_set():
        for records in consumer.poll(timeout_ms=settings.poll_timeout_ms).values():
            for record in records:
                event = json.loads(record.value)
                row = [[event["features"][name] for name in features]]
                score = float(model.predict_proba(row)[0][1])
                prediction = {
                    "event_id": event["event_id"],
                    "model_version": "tutorial",
                    "score": score,
                    "event_ts": event.get("ts"),
                    "scored_at": time.time(),
                }
                producer.send(
                    settings.output_topic, value=json.dumps(prediction).encode(), key=record.key
                )
                done += 1
    producer.flush()
    consumer.close()
    producer.close()


def dataframe_loop(
    settings: Settings, limit: int, model_path: str, stopping: threading.Event
) -> None:
    """Batched and straightforward: no checks of the values, no dead letters."""
    import orjson
    import pandas as pd

    model = joblib.load(model_path)
    columns = list(model.feature_names_in_)
    consumer = scoring_consumer(settings)
    producer = scoring_producer(settings)
    consumer.subscribe([settings.input_topic], NoRebalanceWork())
    done = 0
    while done < limit and not stopping.is_set():
        records = consumer.poll_batch(settings.poll_timeout_ms, settings.batch_max_records)
        if not records:
            continue
        events = [orjson.loads(r.value) for r in records]
        frame = pd.DataFrame.from_records([e["features"] for e in events], columns=columns)
        scores = model.predict_proba(frame)[:, 1].tolist()
        now = time.time()
        values = [
            orjson.dumps(
                {
                    "event_id": e["event_id"],
                    "model_version": "dataframe",
                    "score": score,
                    "event_ts": e.get("ts"),
                    "scored_at": now,
                }
            )
            for e, score in zip(events, scores, strict=True)
        ]
        producer.send_many(settings.output_topic, values, [r.key for r in records])
        if producer.flush(settings.delivery_timeout_s):
            raise SystemExit("dataframe: the broker did not acknowledge a batch")
        consumer.commit(offsets_after(records), settings.delivery_timeout_s)
        done += len(records)
    consumer.close()
    producer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["passthrough", "tutorial", "dataframe"])
    parser.add_argument("--limit", type=int, required=True)
    parser.add_argument("--model", help="joblib file (tutorial only)")
    args = parser.parse_args()
    settings = load_settings(os.environ)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    run: dict[str, Any] = {
        "passthrough": lambda: passthrough(settings, args.limit, stopping),
        "tutorial": lambda: tutorial(settings, args.limit, args.model, stopping),
        "dataframe": lambda: dataframe_loop(settings, args.limit, args.model, stopping),
    }
    run[args.kind]()


if __name__ == "__main__":
    main()
