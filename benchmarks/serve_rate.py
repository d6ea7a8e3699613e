"""Serve rate: `driftline serve` as a user runs it, every feature on, events/s from a full topic.

One topic of N events (Elec2, repeated) is filled once. Each round starts `driftline serve` with
the default configuration (the default model set, ADWIN, checkpoints every 5 s, dead letters, the
predictions topic) on a fresh group and state, and times it from its first consumed event to the
N-th (read from its /metrics every 20 ms). Start-up and group join are not throughput.

With `--against DIR`, each round runs this checkout and then the checkout in DIR (an older
release, say) on the same topic, alternately, and prints the ratio of the medians and the median
of the per-round ratios: a before/after comparison through the command line that both share.

    python benchmarks/serve_rate.py [--events 100000] [--rounds 5] [--against DIR]
                                    [--one-model] [--no-predictions] [--bootstrap HOST:PORT]

`--one-model`: one logistic regression and no drift detection instead of the default set (the
model of benchmarks/throughput.py; a release whose default set differs is compared like that).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from pathlib import Path

from common import ONE_MODEL, Serve, a_broker, fill_elec

HERE = Path(__file__).resolve().parent.parent


def serve_rate(checkout: Path, bootstrap: str, topic: str, n: int, tables: str = "",
               kafka: str = "") -> float:
    """Events/s of `driftline serve` from `checkout`, first consumed event to the n-th."""
    serve = Serve(bootstrap, topic, kafka=kafka, tables=tables, checkout=checkout,
                  prefix="driftline-rate-")
    try:
        deadline = time.monotonic() + 600
        first = None
        while time.monotonic() < deadline:
            seen = serve.consumed()
            now = time.perf_counter()
            if first is None and seen > 0:
                first = (now, seen)
            if seen >= n and first is not None:
                return (n - first[1]) / (now - first[0])
            if serve.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"{checkout}: {serve.consumed():.0f} of {n} consumed; "
                           f"log in {serve.folder}")
    finally:
        serve.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", type=Path, help="another checkout, run in turn with this one")
    parser.add_argument("--one-model", action="store_true",
                        help="one logistic regression, no drift detection (throughput.py's model)")
    parser.add_argument("--no-predictions", action="store_true",
                        help="this checkout without its predictions topic (a release before it "
                        "had none)")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    args = parser.parse_args()
    bootstrap = a_broker(args.bootstrap)
    topic = f"bench-rate-{uuid.uuid4().hex[:8]}"
    fill_elec(bootstrap, topic, args.events)
    extra = ONE_MODEL if args.one_model else ""
    ours: list[float] = []
    theirs: list[float] = []
    for r in range(args.rounds):
        ours.append(serve_rate(HERE, bootstrap, topic, args.events, extra,
                               'predictions_topic = ""' if args.no_predictions else ""))
        line = f"round {r + 1}: this checkout {ours[-1]:,.0f} events/s"
        if args.against is not None:
            theirs.append(serve_rate(args.against.resolve(), bootstrap, topic, args.events,
                                     extra))
            line += (f", {args.against} {theirs[-1]:,.0f} events/s, "
                     f"ratio {ours[-1] / theirs[-1]:.3f}")
        print(line, flush=True)
    print(f"median over {args.rounds} rounds of {args.events:,} events: this checkout "
          f"{statistics.median(ours):,.0f} events/s")
    if theirs:
        print(f"  {args.against}: {statistics.median(theirs):,.0f} events/s; ratio of medians "
              f"{statistics.median(ours) / statistics.median(theirs):.3f}, median per-round ratio "
              f"{statistics.median(o / t for o, t in zip(ours, theirs, strict=True)):.3f}")
    print(f"command: python benchmarks/serve_rate.py --events {args.events} --rounds {args.rounds}"
          + (" --one-model" if args.one_model else "")
          + (" --no-predictions" if args.no_predictions else "")
          + (f" --against {args.against}" if args.against else ""))


if __name__ == "__main__":
    main()
