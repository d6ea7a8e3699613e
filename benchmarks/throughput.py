"""Throughput: driftline's consumer and pipeline against the loop a user would write by hand.

Both read the same topic of N events (Elec2, repeated) from a real broker with the same one
model: driftline's `logistic_regression` preset, which on a binary stream is River's
`StandardScaler() | LogisticRegression()` (the same arithmetic, but for values more than ten
deviations out, which the preset takes as ten deviations), what the loop uses:

- hand-written: kafka-python poll, json.loads, River predict_one and learn_one, nothing else;
  and, unless `--no-predictions`, the same loop sending each prediction to a topic as well
  (`json.dumps` and kafka-python's producer), the like-for-like loop for driftline's
  predictions topic;
- driftline: `KafkaSource` -> `Service` as `driftline serve` builds it, with every feature on:
  decoding and validation, the prequential step, ADWIN and the reweighting response, metrics,
  signed checkpoints every 5 s with their commits, the dead-letter topic and a prediction per
  event on the predictions topic (`--no-predictions`: all but that).

Rounds alternate between the two so that a noisy neighbour hurts both alike; the median rate of
each is reported, and their ratio (goal: >= 1.0). Not a test: it prints figures.

    python benchmarks/throughput.py [--events 100000] [--rounds 3] [--no-predictions]
                                    [--loop-records 500] [--partitions 1] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from common import a_broker
from kafka import KafkaConsumer, KafkaProducer  # the hand-written loops use the client
from prometheus_client import CollectorRegistry
from river import linear_model, preprocessing

from consumers.deadletter import DeadLetters
from consumers.kafka_io import KafkaSink, KafkaSource, create_topic
from consumers.wire import encode
from driftline.app import Outputs
from driftline.checkpoint import Binding, CheckpointStore, load_key
from driftline.checkpointing import Checkpointer
from driftline.config import ModelSpec, Settings
from driftline.datasets import bundled
from driftline.learning import build_learner
from driftline.metrics import Metrics
from driftline.predictions import Predictions
from driftline.service import Service


def fill_topic(bootstrap: str, topic: str, n: int, partitions: int = 1) -> None:
    create_topic(bootstrap, topic, partitions)
    sink = KafkaSink(bootstrap, linger_ms=20, batch_size=256 * 1024)
    rows = itertools.chain.from_iterable(itertools.repeat(list(bundled("elec"))))
    for x, y in itertools.islice(rows, n):
        sink.send(topic, encode(x, y))
    sink.flush()
    sink.close()


def hand_written(bootstrap: str, topic: str, n: int, publish: bool = False,
                 records: int = 500) -> float:
    """The loop by hand; `publish`: it also sends each prediction to `<topic>.hand` (its JSON
    and a kafka-python producer with driftline's linger), as a user's service would; `records`:
    at most that many records a poll (kafka-python's default: 500)."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"hand-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=records,
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50) if publish else None
    out = f"{topic}.hand"
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    seen = 0
    start = None
    while seen < n:
        for messages in consumer.poll(timeout_ms=500).values():
            if start is None:
                start = time.perf_counter()
            for message in messages:
                event = json.loads(message.value)
                x, y = event["x"], event["y"]
                if producer is None:
                    model.predict_one(x)  # the loop: test, then train
                    model.learn_one(x, y)
                else:
                    proba = model.predict_proba_one(x)
                    model.learn_one(x, y)
                    producer.send(out, json.dumps(
                        {"offset": message.offset, "proba": {str(c): p for c, p in proba.items()},
                         "time": time.time()}).encode())
            seen += len(messages)
    elapsed = time.perf_counter() - (start or time.perf_counter())
    consumer.close()
    if producer is not None:
        producer.close()
    return seen / elapsed


def stop_after(metrics: Metrics, n: int, stop: threading.Event,
               done: dict[str, float] | None = None) -> threading.Thread:
    """A thread that notes the time (`done["at"]`) the service has published `n` consumed
    events, and sets `stop`."""

    def watch() -> None:
        while sum(metrics.latest.outcomes.values()) < n:
            time.sleep(0.002)
        if done is not None:
            done["at"] = time.perf_counter()
        stop.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def stop_when_learned(service: Service, learner: Any, n: int, stop: threading.Event,
                      done: dict[str, float]) -> None:
    """Note the time (`done["at"]`) the batch in which `learner` learned its `n`-th event is
    processed, and set `stop`: the end point of the hand-written loop, its n-th event learned.
    (The service's metrics would say it later: it publishes them at most every half second
    while events keep coming, and at once after a poll that finds nothing, which waits out
    the poll's timeout first; up to 0.7 s counted in, on runs of about 2 s.)"""
    process = service._process
    member = learner.members[0]

    def counted(records: Any) -> None:
        process(records)
        if member.learned >= n and "at" not in done:
            done["at"] = time.perf_counter()
            stop.set()

    service._process = counted  # type: ignore[method-assign]


def with_driftline(bootstrap: str, topic: str, n: int, folder: Path,
                   predictions_on: bool = True) -> float:
    """driftline as `serve` runs it with every feature on (one model): ADWIN with the
    reweighting response, signed checkpoints every 5 s, the dead-letter topic and, unless
    `predictions_on` is False, a prediction per event on the predictions topic."""
    settings = Settings(models=(ModelSpec("logreg", "logistic_regression"),))
    group = f"driftline-{uuid.uuid4().hex[:8]}"
    sink = KafkaSink(bootstrap)
    metrics = Metrics(CollectorRegistry())
    dead_letters = DeadLetters(sink, f"{topic}.dlq")
    predictions = Predictions(sink, f"{topic}.predictions") if predictions_on else None
    state = folder / group
    checkpointer = Checkpointer(
        CheckpointStore(state, load_key(state), binding=Binding(topic, group)),
        Outputs(dead_letters, predictions),
        interval_seconds=settings.checkpoint.interval_seconds,
        observe=metrics.checkpoint_seconds.observe,
    )
    learner = build_learner(settings)
    service = Service(learner, dead_letters, metrics,
                      settings.validation.decoder(), checkpointer=checkpointer,
                      predictions=predictions)
    stop = threading.Event()
    done: dict[str, float] = {}
    stop_when_learned(service, learner, n, stop, done)
    service.restore()  # nothing to restore in a new folder; as `serve` starts
    source = KafkaSource(bootstrap, topic, group, on_assign=service.on_assign,
                         on_revoke=service.on_revoke, on_lost=service.on_lost)
    # Time from the first record, like the hand-written loop (group join is not throughput).
    first = source.poll(timeout_ms=10_000)
    start = time.perf_counter()
    service.process(first)
    gc.freeze()  # as `serve` does before its loop
    service.run(source, stop)
    gc.unfreeze()
    sink.close()
    # Up to the n-th event, as the hand-written loop: the shutdown (a last poll that waits for
    # more, the final checkpoint and commit, leaving the group) is not throughput.
    return n / (done["at"] - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--no-predictions", action="store_true",
                        help="driftline without its predictions topic (every other feature on)")
    parser.add_argument("--loop-records", type=int, default=500,
                        help="records a poll of the hand-written loops (default: 500, "
                             "kafka-python's; issue 14 describes its loop with 2,000)")
    parser.add_argument("--partitions", type=int, default=1,
                        help="partitions of the topic (default: 1); the events spread over them")
    args = parser.parse_args()

    bootstrap = a_broker(args.bootstrap)
    topic = f"bench-throughput-{uuid.uuid4().hex[:8]}"
    t = time.perf_counter()
    fill_topic(bootstrap, topic, args.events, args.partitions)
    print(f"topic {topic} ({args.partitions} partitions): {args.events} events in "
          f"{time.perf_counter() - t:.1f} s")

    predictions = not args.no_predictions
    hand, publishing, ours = [], [], []
    folder = Path(tempfile.mkdtemp(prefix="driftline-throughput-"))
    for r in range(args.rounds):
        hand.append(hand_written(bootstrap, topic, args.events, records=args.loop_records))
        if predictions:
            publishing.append(hand_written(bootstrap, topic, args.events, publish=True,
                                           records=args.loop_records))
        ours.append(with_driftline(bootstrap, topic, args.events, folder,
                                   predictions_on=predictions))
        print(f"round {r + 1}: hand-written {hand[-1]:,.0f} events/s, "
              + (f"hand-written publishing its predictions {publishing[-1]:,.0f}, "
                 if predictions else "")
              + f"driftline {ours[-1]:,.0f} events/s")
    h, o = statistics.median(hand), statistics.median(ours)
    print(f"median over {args.rounds} rounds of {args.events} events:")
    print(f"  hand-written loop  {h:,.0f} events/s")
    if predictions:
        print(f"  hand-written loop publishing its predictions  "
              f"{statistics.median(publishing):,.0f} events/s")
    print(f"  driftline          {o:,.0f} events/s")
    print(f"  ratio              {o / h:.3f}  (goal >= 1.0)")
    if predictions:
        print(f"  ratio against the loop that publishes its predictions too  "
              f"{o / statistics.median(publishing):.3f}")
    shutil.rmtree(folder, ignore_errors=True)
    print("command: python benchmarks/throughput.py "
          f"--events {args.events} --rounds {args.rounds}"
          + (" --no-predictions" if args.no_predictions else "")
          + (f" --loop-records {args.loop_records}" if args.loop_records != 500 else "")
          + (f" --partitions {args.partitions}" if args.partitions != 1 else ""))


if __name__ == "__main__":
    main()
