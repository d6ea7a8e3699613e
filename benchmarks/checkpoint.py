"""Throughput with checkpoints every 5 s against checkpoints off, in one run (goal: >= 0.95).

Both sides are driftline's consumer, service and default model set over the same topic of N
Elec2 events from a real broker; rounds alternate so that noise hurts both alike, and the median
rate of each is reported with their ratio. Not a test: it prints figures.

    python benchmarks/checkpoint.py [--events 100000] [--rounds 3] [--interval 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid

from common import a_broker
from prometheus_client import CollectorRegistry
from throughput import fill_topic, stop_after  # same folder

from consumers.deadletter import DeadLetters
from consumers.kafka_io import KafkaSink, KafkaSource
from driftline.checkpoint import CheckpointStore
from driftline.checkpointing import Checkpointer
from driftline.config import Settings
from driftline.learning import build_learner
from driftline.metrics import Metrics
from driftline.service import Service


def run(bootstrap: str, topic: str, n: int, interval: float | None) -> tuple[float, int]:
    """Events/s over the topic, and how many checkpoints were written."""
    with tempfile.TemporaryDirectory() as state:
        store = CheckpointStore(state, b"benchmark-key") if interval else None
        sink = KafkaSink(bootstrap)
        dead_letters = DeadLetters(sink, f"{topic}.dlq")
        metrics = Metrics(CollectorRegistry())
        checkpointer = Checkpointer(store, dead_letters, interval_seconds=interval or 5.0)
        service = Service(build_learner(Settings()), dead_letters, metrics,
                          checkpointer=checkpointer)
        source = KafkaSource(bootstrap, topic, f"bench-{uuid.uuid4().hex[:8]}",
                             on_assign=service.on_assign)
        first = source.poll(timeout_ms=10_000)  # the group join is not throughput
        start = time.perf_counter()
        service.process(first)
        stop = threading.Event()
        stop_after(metrics, n, stop)
        service.run(source, stop)  # includes the final checkpoint
        elapsed = time.perf_counter() - start
        sink.close()
        written = 0 if store is None else int(store.files()[0].stem.split("-")[1])
        return sum(service.outcomes.values()) / elapsed, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    args = parser.parse_args()

    bootstrap = a_broker(args.bootstrap)
    topic = f"bench-checkpoint-{uuid.uuid4().hex[:8]}"
    fill_topic(bootstrap, topic, args.events)

    off, on = [], []
    for r in range(args.rounds):
        rate_off, _ = run(bootstrap, topic, args.events, None)
        rate_on, written = run(bootstrap, topic, args.events, args.interval)
        off.append(rate_off)
        on.append(rate_on)
        print(f"round {r + 1}: checkpoints off {rate_off:,.0f} events/s, "
              f"every {args.interval:g} s {rate_on:,.0f} events/s ({written} written)")
    o, c = statistics.median(off), statistics.median(on)
    print(f"median over {args.rounds} rounds of {args.events} events (default model set):")
    print(f"  checkpoints off        {o:,.0f} events/s")
    print(f"  every {args.interval:g} s             {c:,.0f} events/s")
    print(f"  ratio                  {c / o:.3f}  (goal >= 0.95)")


if __name__ == "__main__":
    main()
