"""Delayed labels: throughput with labels 1,000 events late on the labels topic against labels
in the events, and the memory each event waiting for its label costs.

Both runs read N Elec2 events from a real broker through `KafkaSource` -> `Service` with one
`logistic_regression` member:

- immediate: each event carries its label;
- late: each event has an id and no label; its label follows 1,000 events later on
  `<topic>.labels` (co-partitioned, keyed by id), as `driftline publish --label-delay 1000`.

A run ends when N events have been learned. Rounds alternate between the two so that a noisy
neighbour hurts both alike; medians and their ratio are reported. Memory: the `PendingLabels` of
N Elec2 events (decoded as the service decodes them, with the learner's prediction) measured
with tracemalloc and pickled (as in a checkpoint), divided by N. Not a test: it prints figures.

    python benchmarks/labels.py [--events 20000] [--rounds 3] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import threading
import time
import tracemalloc
import uuid

from common import a_broker
from prometheus_client import CollectorRegistry

from consumers.deadletter import DeadLetters
from consumers.kafka_io import KafkaSink, KafkaSource, create_topic
from consumers.wire import Decoder, encode
from driftline.config import DriftSettings, ModelSpec, Settings
from driftline.datasets import bundled
from driftline.learning import build_learner
from driftline.metrics import Metrics
from driftline.publish import publish
from driftline.service import Service
from pipeline.pending import PendingLabels

DELAY = 1000
SETTINGS = Settings(models=(ModelSpec("logreg", "logistic_regression"),),
                    drift=DriftSettings(detector="none", response="none"))


def fill(bootstrap: str, topic: str, n: int, *, late: bool) -> None:
    create_topic(bootstrap, topic, 1)
    if late:
        create_topic(bootstrap, f"{topic}.labels", 1)
    sink = KafkaSink(bootstrap, linger_ms=20, batch_size=256 * 1024)
    publish(lambda v, k: sink.send(topic, v, k), bundled("elec", limit=n),
            label_delay=DELAY if late else 0,
            send_label=lambda v, k: sink.send(f"{topic}.labels", v, k))
    sink.flush()
    sink.close()


def rate(bootstrap: str, topic: str, n: int, *, late: bool) -> float:
    """Events learned per second, from the first record polled to the n-th learned."""
    sink = KafkaSink(bootstrap)
    metrics = Metrics(CollectorRegistry())
    labels = f"{topic}.labels" if late else None
    service = Service(build_learner(SETTINGS), DeadLetters(sink, f"{topic}.dlq"), metrics,
                      labels_topic=labels)
    source = KafkaSource(bootstrap, topic, f"bench-{uuid.uuid4().hex[:8]}",
                         on_assign=service.on_assign, labels_topic=labels)
    first: list = []
    while not first:  # the group join is not throughput
        first = source.poll(timeout_ms=1000)
    start = time.perf_counter()
    stop = threading.Event()

    def watch() -> None:
        while metrics.latest.outcomes.get("learned", 0) < n:
            time.sleep(0.005)
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    service._behind = source.behind  # run() sets it too; the first batch is processed here
    service.process(first)
    service.run(source, stop)
    elapsed = time.perf_counter() - start
    sink.close()
    return service.outcomes["learned"] / elapsed


def pending_bytes(n: int) -> tuple[float, float]:
    """Bytes per waiting event: (allocated, as tracemalloc sees it; pickled)."""
    learner = build_learner(SETTINGS)
    rows = list(bundled("elec", limit=n))
    for x, y in rows[:DELAY]:  # a learner that has learned something predicts something
        learner.step(x, y)
    decode = Decoder().decode
    values = [encode(x, None, f"e{i}") for i, (x, _) in enumerate(rows)]
    events = [decode(v) for v in values]
    predictions = [learner.predict(e.x) for e in events]  # type: ignore[union-attr]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    pending = PendingLabels(max_pending=n + 1)
    for i, (e, p) in enumerate(zip(events, predictions, strict=True)):
        # The decoded x and the prediction are the service's own objects; counted here.
        pending.add(e.id, dict(e.x), p, float(i))  # type: ignore[arg-type, union-attr]
    allocated = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    pickled = len(pickle.dumps(pending, protocol=pickle.HIGHEST_PROTOCOL))
    return allocated / n, pickled / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    args = parser.parse_args()
    n = min(args.events, len(list(bundled("elec"))))

    bootstrap = a_broker(args.bootstrap)
    stem = f"bench-labels-{uuid.uuid4().hex[:8]}"
    immediate, late = f"{stem}-inline", f"{stem}-late"
    fill(bootstrap, immediate, n, late=False)
    fill(bootstrap, late, n, late=True)
    print(f"topics {immediate} and {late} (+ .labels): {n} Elec2 events each, "
          f"labels {DELAY} events late")

    inline_rates, late_rates = [], []
    for r in range(args.rounds):
        inline_rates.append(rate(bootstrap, immediate, n, late=False))
        late_rates.append(rate(bootstrap, late, n, late=True))
        print(f"round {r + 1}: immediate {inline_rates[-1]:,.0f} events/s, "
              f"late {late_rates[-1]:,.0f} events/s")
    i, lt = statistics.median(inline_rates), statistics.median(late_rates)
    allocated, pickled = pending_bytes(n)
    print(f"median over {args.rounds} rounds of {n} events:")
    print(f"  labels in the events           {i:,.0f} events/s")
    print(f"  labels {DELAY} late, own topic   {lt:,.0f} events/s")
    print(f"  ratio                          {lt / i:.3f}")
    print(f"memory per pending event ({n} waiting): {allocated:,.0f} B allocated, "
          f"{pickled:,.0f} B pickled")


if __name__ == "__main__":
    main()
