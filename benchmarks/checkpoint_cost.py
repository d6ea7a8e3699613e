"""The cost of one checkpoint: write the default pipeline's state after N events, a few times.

Complements benchmarks/checkpoint.py (throughput with and without checkpoints), whose ratio is
noisy on a shared machine: this prints the time of each write, the file size, and the median
write as a share of the checkpoint interval. Not a test: it prints figures.

    python benchmarks/checkpoint_cost.py [--events 100000] [--writes 5] [--interval 5]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time

from driftline.checkpoint import CheckpointStore, State
from driftline.config import Settings
from driftline.datasets import bundled
from driftline.learning import build_learner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=5)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()

    pipeline = build_learner(Settings())
    for x, y in itertools.islice(itertools.cycle(list(bundled("elec"))), args.events):
        pipeline.step(x, y)
    with tempfile.TemporaryDirectory() as folder:
        store = CheckpointStore(folder, b"benchmark-key")
        times = []
        for _ in range(args.writes):
            start = time.perf_counter()
            path = store.save(State(pipeline, {0: args.events}))
            times.append(time.perf_counter() - start)
        size = path.stat().st_size
    median = statistics.median(times)
    print(f"default pipeline after {args.events} events, checkpoint {size:,} bytes")
    print("writes (ms):", ", ".join(f"{t * 1000:.1f}" for t in times))
    print(f"median {median * 1000:.1f} ms = {median / args.interval:.2%} of a "
          f"{args.interval:g} s interval")


if __name__ == "__main__":
    main()
