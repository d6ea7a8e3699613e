"""Soak: memory over many events and latency at a steady rate, `driftline serve` with its defaults.

1. Memory: N events (Elec2, repeated) are published to a fresh topic and one `driftline serve`
   with the default configuration (the default model set, ADWIN, checkpoints, the predictions
   topic) consumes them; its resident memory (VmRSS) is read every `--sample` events. Printed:
   RSS at each sample and the growth from the first sample to the last (goal: under 5%).
2. Latency: a fresh service on a fresh topic; events are published at `--rate` events/s for
   `--seconds`; each event's latency is the time its prediction was made (the predictions
   topic's `time`) less the event's Kafka timestamp. Printed: p50 and p99 (goal: p99 < 50 ms).

    python benchmarks/soak.py [--events 10000000] [--sample 1000000] [--rate 500]
                              [--seconds 120] [--bootstrap HOST:PORT]

Linux only (RSS from /proc). The issue's full run is 10 million events; a shorter run prints
the same figures over fewer samples.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import Serve, a_broker, consumed, elec_forever, fill_elec
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from consumers.kafka_io import create_topic
from consumers.wire import encode


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def memory(bootstrap: str, events: int, sample: int) -> None:
    topic = f"bench-soak-{uuid.uuid4().hex[:8]}"
    fill_elec(bootstrap, topic, events)
    serve = Serve(bootstrap, topic, prefix="driftline-soak-")
    try:
        samples: list[tuple[int, float]] = []
        start = time.monotonic()
        next_mark = sample
        while next_mark <= events:
            n = consumed(serve.port)
            if n >= next_mark:
                samples.append((next_mark, rss_mib(serve.proc.pid)))
                print(f"  {next_mark:>12,} events: RSS {samples[-1][1]:,.1f} MiB "
                      f"({n / (time.monotonic() - start):,.0f} events/s so far)", flush=True)
                next_mark += sample
            elif serve.proc.poll() is not None:
                raise RuntimeError(f"serve exited; log in {serve.folder}")
            else:
                time.sleep(0.5)
    finally:
        serve.stop()
    first, last = samples[0][1], samples[-1][1]
    print(f"memory: RSS {first:,.1f} MiB at {samples[0][0]:,} events, {last:,.1f} MiB at "
          f"{samples[-1][0]:,}: growth {last / first - 1:+.1%} (goal: under +5%)")


def latency(bootstrap: str, rate: float, seconds: float) -> None:
    topic = f"bench-latency-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 1)
    serve = Serve(bootstrap, topic, prefix="driftline-soak-")
    try:
        serve.ready()
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        n = int(rate * seconds)
        events = itertools.islice(elec_forever(), n)
        # The first send waits for the producer's connection to the partition's leader (some
        # 0.4 s here); the rate's clock starts once it is delivered, or the publisher would
        # start behind and send a burst of its backlog at once, which is not 500 events/s.
        producer.send(topic, encode(*next(events))).get(timeout=30)
        start = time.monotonic()
        for i, (x, y) in enumerate(events, start=1):
            delay = start + (i - 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            producer.send(topic, encode(x, y))
        producer.flush()
        producer.close()
        deadline = time.monotonic() + 120
        while consumed(serve.port) < n and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        serve.stop()
    stamps = read(bootstrap, topic, lambda m: (m.offset, m.timestamp / 1000.0))
    made = read(bootstrap, f"{topic}.predictions",
                lambda m: (json.loads(m.value)["offset"], json.loads(m.value)["time"]))
    by_offset = {o: 1000.0 * (t - stamps[o]) for o, t in made.items() if o in stamps}
    latencies = sorted(by_offset.values())
    if not latencies:
        raise RuntimeError(f"no predictions; log in {serve.folder}")
    spells(by_offset, stamps)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(f"latency at {rate:g} events/s over {len(latencies):,} events: p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms (goal: p99 under 50 ms)")


def spells(latency: dict[int, float], stamps: dict[int, float], over: float = 50.0) -> None:
    """Print where the events slower than `over` ms are: runs of them less than 0.5 s apart."""
    t0 = min(stamps.values())
    runs: list[list[float]] = []  # [first s, last s, worst ms, events]
    for offset in sorted(latency):
        if latency[offset] <= over:
            continue
        at = stamps[offset] - t0
        if runs and at - runs[-1][1] < 0.5:
            runs[-1][1:] = [at, max(runs[-1][2], latency[offset]), runs[-1][3] + 1]
        else:
            runs.append([at, at, latency[offset], 1])
    print(f"{sum(int(r[3]) for r in runs)} events over {over:g} ms" + "".join(
        f"\n  at {a:.2f}-{b:.2f} s: {int(k)} events, up to {worst:.0f} ms"
        for a, b, worst, k in runs))


def read(bootstrap: str, topic: str, pick: Callable[[Any], tuple[int, float]]) -> dict[int, float]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    out = dict(pick(message) for message in consumer)
    consumer.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--sample", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    bootstrap = a_broker(args.bootstrap)
    if not args.skip_memory:
        memory(bootstrap, args.events, args.sample)
    latency(bootstrap, args.rate, args.seconds)
    print("command: python benchmarks/soak.py "
          + ("--skip-memory " if args.skip_memory else
             f"--events {args.events} --sample {args.sample} ")
          + f"--rate {args.rate:g} --seconds {args.seconds:g}")


if __name__ == "__main__":
    main()
