"""What the service shows the world, as one immutable value published after each batch.

The loop builds a new `Snapshot` and publishes it (one reference assignment, atomic under the
GIL); the Prometheus collector, `/api/stats`, `/api/history` and `/readyz` read whichever one is
published last, so no reader ever touches the live pipeline or waits for the loop's lock.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from consumers.wire import REASONS
from pipeline.ensemble import ModelStats

# What became of each consumed event.
LEARNED, UNLABELLED, DEAD_LETTERED = OUTCOMES = ("learned", "unlabelled", "dead_lettered")
READY_WITHIN = 10.0  # seconds: a poll older than this means the service is not consuming


def _zeros(names: tuple[str, ...]) -> dict[str, int]:
    return dict.fromkeys(names, 0)


@dataclass(frozen=True)
class Snapshot:
    """The service's figures at one moment; counters are totals since the first checkpoint."""

    models: Mapping[str, ModelStats] = field(default_factory=dict)  # members and the ensemble
    outcomes: Mapping[str, int] = field(default_factory=lambda: _zeros(OUTCOMES))
    dead_letters: Mapping[str, int] = field(default_factory=lambda: _zeros(REASONS))
    lag: Mapping[int, int] = field(default_factory=dict)  # partition -> records behind
    assigned: tuple[int, ...] = ()
    restored_offsets: Mapping[int, int] = field(default_factory=dict)
    started: float | None = None  # Unix time the service started; None before it exists
    last_poll: float | None = None  # Unix time of the last successful poll
    checkpoint_time: float | None = None  # Unix time the state was last fully checkpointed
    scope: str = "global"  # checkpoint.scope: "partition" fills `partition_models` instead
    # partition scope: input partition -> its learner's models (owned partitions only)
    partition_models: Mapping[int, Mapping[str, ModelStats]] = field(default_factory=dict)
    # model -> predictions checked against a label, and how many of those were right
    predictions: Mapping[str, int] = field(default_factory=dict)
    predictions_correct: Mapping[str, int] = field(default_factory=dict)

    def checkpoint_age(self, now: float) -> float:
        """Seconds since the last checkpoint; NaN before the first."""
        if self.checkpoint_time is None:
            return math.nan
        return max(0.0, now - self.checkpoint_time)

    def ready(self, now: float) -> bool:
        """Consuming: partitions assigned and a poll succeeded in the last `READY_WITHIN` s."""
        return (
            bool(self.assigned)
            and self.last_poll is not None
            and now - self.last_poll < READY_WITHIN
        )

    def status(self, now: float) -> dict[str, Any]:
        """What `/api/stats` and the dashboard show (JSON-friendly); {} before the service."""
        if self.started is None:
            return {}
        age = self.checkpoint_age(now)
        return {
            "uptime_seconds": round(now - self.started, 3),
            "events": dict(self.outcomes),
            "lag": {str(p): v for p, v in self.lag.items()},
            "checkpoint": {"age_seconds": None if math.isnan(age) else round(age, 3)},
            "models": {name: dataclasses.asdict(stats) for name, stats in self.models.items()},
            "scope": self.scope,
            "partitions": list(self.assigned),
            "partition_models": {
                str(p): {name: dataclasses.asdict(stats) for name, stats in models.items()}
                for p, models in sorted(self.partition_models.items())
            },
            "predictions": {
                name: {"total": n, "correct": self.predictions_correct.get(name, 0)}
                for name, n in self.predictions.items()
            },
        }
