"""The one module that imports prometheus_client.

The registry is passed in (never the global one), so each test builds its own and reads it with
`registry.get_sample_value(...)`. Values are pushed once per processed batch from the pipeline's
snapshot, not per event, to keep the hot path free of locks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from pipeline import ModelStats

__all__ = ["CONTENT_TYPE_LATEST", "OUTCOMES", "CollectorRegistry", "Metrics"]

OUTCOMES = ("learned", "unlabelled", "dead_lettered")
_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0)


class Metrics:
    """driftline's Prometheus metrics (names fixed by DESIGN.md), bound to one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.prequential_accuracy = Gauge(
            "driftline_prequential_accuracy",
            "Accuracy over every labelled event the model was tested on since it was created.",
            ["model"], registry=r,
        )
        self.rolling_accuracy = Gauge(
            "driftline_rolling_accuracy",
            "Accuracy over the last metrics.rolling_window tested events.",
            ["model"], registry=r,
        )
        self.samples_learned = Gauge(
            "driftline_samples_learned", "Samples the model's state has learned.", ["model"],
            registry=r,
        )
        self.samples_tested = Gauge(
            "driftline_samples_tested", "Labelled events the model was tested on.", ["model"],
            registry=r,
        )
        self.model_weight = Gauge(
            "driftline_model_weight", "The member's normalised weight in the ensemble vote.",
            ["model"], registry=r,
        )
        self.failed = Gauge(
            "driftline_model_failed",
            "1 once the model raised and was set aside (it no longer predicts or learns).",
            ["model"], registry=r,
        )
        self.drifts = Counter(
            "driftline_drift_detections", "Drifts detected in the model's error stream.",
            ["model"], registry=r,
        )
        self.last_drift = Gauge(
            "driftline_last_drift_timestamp_seconds", "Unix time of the model's last drift.",
            ["model"], registry=r,
        )
        self.events = Counter(
            "driftline_events", "Events consumed, by what became of them.", ["outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "driftline_dead_letters", "Messages sent to the dead-letter topic, by reason.",
            ["reason"], registry=r,
        )
        self.consumer_lag = Gauge(
            "driftline_consumer_lag", "Messages behind the partition's high-water mark.",
            ["partition"], registry=r,
        )
        self.latency = Histogram(
            "driftline_processing_latency_seconds",
            "From an event's Kafka timestamp to the end of its processing (last of each batch).",
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.batch_seconds = Histogram(
            "driftline_batch_duration_seconds", "Time to process one polled batch.", registry=r,
        )
        self.checkpoint_age = Gauge(
            "driftline_checkpoint_age_seconds",
            "Seconds since the last checkpoint was written (NaN before the first).",
            registry=r,
        )
        self.checkpoint_seconds = Histogram(
            "driftline_checkpoint_duration_seconds", "Time to write one checkpoint.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0), registry=r,
        )
        self.restored_offset = Gauge(
            "driftline_checkpoint_restored_offset",
            "The next offset of each partition in the checkpoint restored at start.",
            ["partition"], registry=r,
        )
        for outcome in OUTCOMES:
            self.events.labels(outcome)
        self._drifts_seen: dict[str, int] = {}

    def observe_models(self, snapshot: Mapping[str, ModelStats]) -> None:
        for name, stats in snapshot.items():
            if stats.accuracy is not None:
                self.prequential_accuracy.labels(name).set(stats.accuracy)
            if stats.rolling_accuracy is not None:
                self.rolling_accuracy.labels(name).set(stats.rolling_accuracy)
            self.samples_learned.labels(name).set(stats.learned)
            self.samples_tested.labels(name).set(stats.tested)
            self.model_weight.labels(name).set(stats.weight)
            self.failed.labels(name).set(1 if stats.failed else 0)
            # Counters only go up: add what is new since the last batch (after a restore, the
            # whole restored count at once).
            new = stats.drifts - self._drifts_seen.get(name, 0)
            if new > 0:
                self.drifts.labels(name).inc(new)
            self._drifts_seen[name] = stats.drifts
            if stats.last_drift_time is not None:
                self.last_drift.labels(name).set(stats.last_drift_time)

    def observe_events(self, outcomes: Mapping[str, int], reasons: Mapping[str, int]) -> None:
        for outcome, n in outcomes.items():
            if n:
                self.events.labels(outcome).inc(n)
        for reason, n in reasons.items():
            self.dead_letters.labels(reason).inc(n)

    def observe_lag(self, lag: Mapping[int, int]) -> None:
        for partition, value in lag.items():
            self.consumer_lag.labels(str(partition)).set(value)

    def observe_latency(self, seconds: Iterable[float]) -> None:
        for s in seconds:
            self.latency.observe(max(0.0, s))

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
