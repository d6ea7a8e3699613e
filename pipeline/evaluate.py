"""Run the learning core over a finite stream and summarise it (`driftline evaluate`)."""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable
from typing import Any

from pipeline.core import Pipeline


def evaluate(pipeline: Pipeline, rows: Iterable[tuple[dict[str, Any], Hashable | None]]) -> dict:
    """Process every (x, y) in order; the report of DESIGN.md (`events`, `seconds`, `models`)."""
    events = 0
    process = pipeline.process
    start = time.perf_counter()
    for x, y in rows:
        process(x, y)
        events += 1
    seconds = time.perf_counter() - start
    models = {
        name: {"accuracy": stats.accuracy, "drifts": stats.drifts}
        for name, stats in pipeline.snapshot().items()
    }
    return {"events": events, "seconds": round(seconds, 6), "models": models}
