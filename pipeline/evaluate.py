"""Run a learner over a finite stream and summarise it (`driftline evaluate`).

With `delay`, each row's label is held back until `delay` more rows have arrived (River's
`evaluate.progressive_val_score(..., delay=delay)`): the row is predicted on arrival and scored
on that prediction, then learned, when its label comes.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from collections.abc import Hashable, Iterable, Iterator
from typing import Any

from pipeline.ensemble import DriftEnsemble, LimitExceeded, ModelStats, Prediction
from pipeline.names import class_names

Row = tuple[dict[str, Any], Hashable | None]


def evaluate(
    learner: DriftEnsemble,
    rows: Iterable[Row],
    delay: int = 0,
    max_abs_value: float | None = None,
) -> dict[str, Any]:
    """Process every (x, y) in order; the report: `events`, `seconds` (the whole run),
    `read_seconds` (the part of it spent reading `rows`: a file's parsing, and the check of
    `max_abs_value`), `rejected` (rows not learned) and `rejections` (their count per reason),
    `models`.

    With `max_abs_value`, a row with a number beyond it is rejected, ``out_of_range``, as
    `serve` dead-letters such an event: a value near the float limit overflows a model's
    arithmetic (River's naive Bayes raises on 1e308).
    """
    events = 0
    reasons: Counter[str] = Counter()
    read = [0.0]
    start = time.perf_counter()
    if max_abs_value is not None:
        rows = _within(rows, max_abs_value, reasons)
    rows = _timed(rows, read)
    if delay <= 0:
        step = learner.step
        for x, y in rows:
            events += 1
            try:
                step(x, y)
            except LimitExceeded as exc:
                reasons[exc.reason] += 1
    else:
        pending: deque[tuple[dict[str, Any], Hashable, Prediction]] = deque()
        for x, y in rows:
            events += 1
            try:
                learner.check(x, y)
            except LimitExceeded as exc:
                reasons[exc.reason] += 1
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
    out_of_range = reasons["out_of_range"]
    return {
        "events": events + out_of_range,  # the rows read, as serve counts the events consumed
        "seconds": round(seconds, 6),
        "read_seconds": round(read[0], 6),
        "rejected": sum(reasons.values()),
        "rejections": dict(sorted(reasons.items())),
        "models": {name: report(stats) for name, stats in learner.stats().items()},
    }


def _within(rows: Iterable[Row], bound: float, reasons: Counter[str]) -> Iterator[Row]:
    """The rows whose numbers all lie within -bound..bound; the others counted, not given."""
    low = -bound
    for row in rows:
        for v in row[0].values():
            if v.__class__ is not str and not low <= v <= bound:  # NaN fails it too
                reasons["out_of_range"] += 1
                break
        else:
            yield row


def _timed(rows: Iterable[Row], read: list[float], chunk: int = 1000) -> Iterator[Row]:
    """`rows`, read `chunk` at a time, the time spent reading them added to `read[0]`: the
    learning core's own rate is then `events / (seconds - read_seconds)`, as for rows in
    memory. (Two clock readings a chunk, not an event: nothing to measure in the total.)"""
    it = iter(rows)
    clock = time.perf_counter
    while True:
        t = clock()
        batch = list(itertools.islice(it, chunk))
        read[0] += clock() - t
        if not batch:
            return
        yield from batch


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
