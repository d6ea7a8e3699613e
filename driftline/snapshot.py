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
    pending_labels: int = 0  # events waiting for a delayed label
    labels_expired: int = 0  # events dropped before their label came, in all
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
            "models": {name: dataclasses.asdict(stats) for name, stats in self.models.items()}
            if self.scope != "partition" else combined(self.partition_models),
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


def combined(units: Mapping[int, Mapping[str, ModelStats]]) -> dict[str, dict[str, Any]]:
    """Partition scope, for the page: each model over the owned partitions' learners (counts
    summed, accuracies weighted by the events tested, weights averaged)."""
    out: dict[str, dict[str, Any]] = {}
    names: list[str] = []
    for models in units.values():
        names += [n for n in models if n not in names]
    for name in names:
        stats = [models[name] for models in units.values() if name in models]
        tested = sum(s.tested for s in stats)

        def weighted(value: Any, stats: list[ModelStats] = stats, tested: int = tested) -> Any:
            known = [(value(s), s.tested) for s in stats if value(s) is not None]
            if not known or not tested:
                return None
            return sum(v * n for v, n in known) / max(1, sum(n for _, n in known))

        drift_times = [s.last_drift_time for s in stats if s.last_drift_time is not None]
        out[name] = {
            "accuracy": weighted(lambda s: s.accuracy),
            "rolling_accuracy": weighted(lambda s: s.rolling_accuracy),
            "tested": tested,
            "learned": sum(s.learned for s in stats),
            "drifts": sum(s.drifts for s in stats),
            "weight": sum(s.weight for s in stats) / len(stats),
            "last_drift_time": max(drift_times) if drift_times else None,
            "failed": any(s.failed for s in stats),
            "failures": sum(s.failures for s in stats),
            "f1": weighted(lambda s: s.f1),
            "rolling_f1": weighted(lambda s: s.rolling_f1),
        }
    return out
