"""The default ensemble's cost against the sum of its members' own costs in River.

On Elec2 (45,312 events, read into memory first): each member of the default model set alone,
test-then-train in a plain loop (`predict_proba_one`, `learn_one`), and the default ensemble
through driftline's learning core (`pipeline.evaluate.evaluate`, what `driftline evaluate` runs).
Rounds alternate between the two so that a noisy neighbour hurts both alike; the medians and
their ratio are printed (goal: the ensemble costs at most 1.2x the sum of its members).
Members that sleep on a stream cost nothing while they sleep, so the ratio may be below 1.

    python benchmarks/ensemble_cost.py [--rounds 3] [--events N]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

from driftline.config import Settings
from driftline.datasets import bundled
from driftline.learning import build_learner
from pipeline.evaluate import evaluate
from pipeline.presets import build_model


def members_alone(rows: list, settings: Settings) -> float:
    """Seconds for every member of `settings`, each alone over `rows`, added up."""
    total = 0.0
    for spec in settings.models:
        model = build_model(spec.model)
        start = time.perf_counter()
        for x, y in rows:
            model.predict_proba_one(x)
            model.learn_one(x, y)
        total += time.perf_counter() - start
    return total


def ensemble(rows: list, settings: Settings) -> float:
    start = time.perf_counter()
    evaluate(build_learner(settings), rows)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=None, help="default: all of Elec2")
    args = parser.parse_args()
    rows = list(itertools.islice(bundled("elec"), args.events))
    settings = Settings()
    alone, together = [], []
    for r in range(args.rounds):
        alone.append(members_alone(rows, settings))
        together.append(ensemble(rows, settings))
        print(f"round {r + 1}: members alone {len(rows) / alone[-1]:,.0f} events/s, "
              f"ensemble {len(rows) / together[-1]:,.0f} events/s, "
              f"ratio {together[-1] / alone[-1]:.3f}")
    a, t = statistics.median(alone), statistics.median(together)
    print(f"median: members alone (sum) {len(rows) / a:,.0f} events/s, default ensemble "
          f"{len(rows) / t:,.0f} events/s; ensemble cost / sum of members' costs = {t / a:.3f}")
    print(f"command: python benchmarks/ensemble_cost.py --rounds {args.rounds}"
          + (f" --events {args.events}" if args.events else ""))


if __name__ == "__main__":
    main()
