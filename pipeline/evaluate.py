"""Run a learner over a finite stream and summarise it (`driftline evaluate`).

With `delay`, each row's label is held back until `delay` more rows have arrived (River's
`evaluate.progressive_val_score(..., delay=delay)`): the row is predicted on arrival and scored
on that prediction, then learned, when its label comes.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable, Iterable
from typing import Any

from pipeline.ensemble import DriftEnsemble, LimitExceeded, ModelStats, Prediction
from pipeline.names import class_names


def evaluate(
    learner: DriftEnsemble,
    rows: Iterable[tuple[dict[str, Any], Hashable | None]],
    delay: int = 0,
) -> dict[str, Any]:
    """Process every (x, y) in order; the report: `events`, `seconds`, `rejected`, `models`."""
    events = rejected = 0
    start = time.perf_counter()
    if delay <= 0:
        step = learner.step
        for x, y in rows:
            events += 1
            try:
                step(x, y)
            except LimitExceeded:
                rejected += 1
    else:
        pending: deque[tuple[dict[str, Any], Hashable, Prediction]] = deque()
        for x, y in rows:
            events += 1
            try:
                learner.check(x, y)
            except LimitExceeded:
                rejected += 1
                continue
            # As River's `stream.simulate_qa`: the labels due now are revealed before the
            # row that makes them due is predicted.
            while len(pending) >= delay:
                learner.learn(*pending.popleft())
            prediction = learner.predict(x)
            if y is not None:
                pending.append((x, y, prediction))
        while pending:  # the stream has ended: the labels still held back arrive
            learner.learn(*pending.popleft())
    seconds = time.perf_counter() - start
    return {
        "events": events,
        "seconds": round(seconds, 6),
        "rejected": rejected,
        "models": {name: report(stats) for name, stats in learner.stats().items()},
    }


def report(stats: ModelStats) -> dict[str, Any]:
    """One model's part of the report."""
    names = class_names(stats.recall)
    return {
        "accuracy": stats.accuracy,
        "f1": stats.f1,
        "recall": {names[c]: r for c, r in sorted(stats.recall.items(),
                                                   key=lambda kv: names[kv[0]])},
        "drifts": stats.drifts,
        "tested": stats.tested,
        "learned": stats.learned,
        "failed": stats.failures,
        "resets": sum(stats.resets.values()),
    }
