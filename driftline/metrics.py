"""The one module that imports prometheus_client.

The registry is passed in (never the global one), so each test builds its own and reads it with
`registry.get_sample_value(...)`. Gauges and counters are not kept here: a collector reads them
at scrape time from the `Snapshot` the service published last (prometheus_client's custom
collector pattern), so a scrape never touches the live pipeline. Only the histograms, which
observe one duration at a time, are ordinary prometheus_client objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from driftline.snapshot import Snapshot
from pipeline.ensemble import ModelStats
from pipeline.names import RESET_REASONS, class_names

__all__ = ["CONTENT_TYPE_LATEST", "CollectorRegistry", "Metrics", "SnapshotCollector"]

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0)
_CHECKPOINT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

# Per-model gauges: (name, help, value; None leaves the model's series out until it has one).
# Per-class series only while a model has seen at most this many classes: past it, a series a
# class would swamp Prometheus, and the macro-F1 still tells whether rare classes are ignored.
MAX_CLASS_SERIES = 20

_MODEL_GAUGES: tuple[tuple[str, str, Callable[[ModelStats], float | None]], ...] = (
    ("driftline_prequential_accuracy",
     "Accuracy over every labelled event the model was tested on since it was created.",
     lambda s: s.accuracy),
    ("driftline_rolling_accuracy",
     "Accuracy over the last learning.rolling_window tested events.",
     lambda s: s.rolling_accuracy),
    ("driftline_samples_learned", "Samples the model's state has learned.", lambda s: s.learned),
    ("driftline_samples_tested", "Labelled events the model was tested on.", lambda s: s.tested),
    ("driftline_model_weight", "The member's normalised weight in the ensemble vote.",
     lambda s: s.weight),
    ("driftline_model_failed",
     "1 while the model's most recent event made it raise (it is reset after a run of them).",
     lambda s: 1 if s.failed else 0),
    ("driftline_prequential_f1",
     "Macro-F1 over every labelled event the model was tested on since it was created.",
     lambda s: s.f1),
    ("driftline_rolling_f1", "Macro-F1 over the last learning.rolling_window tested events.",
     lambda s: s.rolling_f1),
    ("driftline_last_drift_timestamp_seconds", "Unix time of the model's last drift.",
     lambda s: s.last_drift_time),
)


class SnapshotCollector(Collector):
    """Every gauge and counter of driftline, read from the latest snapshot at each scrape.

    Counters come from the snapshot's totals, which a restore carries over from the checkpoint,
    so they continue across restarts. Every outcome and every dead-letter reason is exported
    from the start, at 0 until it happens.
    """

    def __init__(self, latest: Callable[[], Snapshot], clock: Callable[[], float] = time.time):
        self._latest = latest
        self._clock = clock

    def describe(self) -> Iterable[Metric]:
        # The names, so that the registry refuses another collector that exports one of them.
        return list(self._families(None))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(self._latest()))

    def _families(self, s: Snapshot | None) -> Iterator[Metric]:
        # In partition scope every partition has its own learner: its series carry a
        # `partition` label, and only the partitions this instance owns have series.
        partitioned = s is not None and s.scope == "partition"
        labels = ["model", "partition"] if partitioned else ["model"]
        units: list[tuple[list[str], Mapping[str, ModelStats]]] = []
        if s is not None and partitioned:
            units = [([str(p)], models) for p, models in sorted(s.partition_models.items())]
        elif s is not None:
            units = [([], s.models)]
        for name, doc, value in _MODEL_GAUGES:
            family = GaugeMetricFamily(name, doc, labels=labels)
            for extra, models in units:
                for model, stats in models.items():
                    v = value(stats)
                    if v is not None:
                        family.add_metric([model, *extra], v)
            yield family
        for name, doc, per_class in (
            ("driftline_prequential_recall",
             "Per class: the share of its labelled events the model predicted as it, since "
             f"the model was created (while it has seen at most {MAX_CLASS_SERIES} classes).",
             lambda stats: stats.recall),
            ("driftline_rolling_recall",
             "Per class: recall over the last learning.rolling_window tested events (while "
             f"the model has seen at most {MAX_CLASS_SERIES} classes).",
             lambda stats: stats.rolling_recall),
        ):
            family = GaugeMetricFamily(name, doc, labels=["model", "class", *labels[1:]])
            for extra, models in units:
                for model, stats in models.items():
                    recalls = per_class(stats)
                    if len(stats.recall) <= MAX_CLASS_SERIES:
                        names = class_names(recalls)
                        for label, value in recalls.items():
                            family.add_metric([model, names[label], *extra], value)
            yield family
        resets = CounterMetricFamily(
            "driftline_model_resets",
            "Times the model was replaced by a fresh copy, by reason: drift (response reset), "
            "failures (a run of events it raised on), non_finite (its state was poisoned).",
            labels=["model", "reason", *labels[1:]],
        )
        failures = CounterMetricFamily(
            "driftline_model_failures", "Events the model raised on.", labels=labels
        )
        drifts = CounterMetricFamily(
            "driftline_drift_detections", "Drifts detected in the model's error stream.",
            labels=labels,
        )
        predictions = CounterMetricFamily(
            "driftline_predictions",
            "Predictions checked against the event's label (for a fleet's accuracy, with "
            "driftline_predictions_correct_total).", labels=["model"],
        )
        correct = CounterMetricFamily(
            "driftline_predictions_correct",
            "Predictions checked against the event's label that were right.", labels=["model"],
        )
        events = CounterMetricFamily(
            "driftline_events", "Events consumed, by what became of them.", labels=["outcome"]
        )
        dead = CounterMetricFamily(
            "driftline_dead_letters", "Messages sent to the dead-letter topic, by reason.",
            labels=["reason"],
        )
        lag = GaugeMetricFamily(
            "driftline_consumer_lag", "Messages behind the partition's high-water mark.",
            labels=["partition"],
        )
        restored = GaugeMetricFamily(
            "driftline_checkpoint_restored_offset",
            "The next offset of each partition in the checkpoint restored at start.",
            labels=["partition"],
        )
        age = GaugeMetricFamily(
            "driftline_checkpoint_age_seconds",
            "Seconds since the last checkpoint was written (NaN before the first).",
        )
        if s is not None:
            for extra, models in units:
                for model, stats in models.items():
                    drifts.add_metric([model, *extra], stats.drifts)
                    failures.add_metric([model, *extra], stats.failures)
                    for reason in RESET_REASONS:
                        resets.add_metric([model, reason, *extra], stats.resets.get(reason, 0))
            for model, n in s.predictions.items():
                predictions.add_metric([model], n)
                correct.add_metric([model], s.predictions_correct.get(model, 0))
            for outcome, n in s.outcomes.items():
                events.add_metric([outcome], n)
            for reason, n in s.dead_letters.items():
                dead.add_metric([reason], n)
            for partition, behind in s.lag.items():
                lag.add_metric([str(partition)], behind)
            for partition, offset in s.restored_offsets.items():
                restored.add_metric([str(partition)], offset)
            age.add_metric([], s.checkpoint_age(self._clock()))
        pending = GaugeMetricFamily(
            "driftline_pending_labels", "Events waiting for their delayed label."
        )
        expired = CounterMetricFamily(
            "driftline_labels_expired",
            "Events dropped before their label came ([labels] max_pending, max_age_seconds).",
        )
        pending.add_metric([], s.pending_labels if s else 0)
        expired.add_metric([], s.labels_expired if s else 0)
        yield from (drifts, resets, failures, predictions, correct, events, dead, lag, age,
                    restored, pending, expired)


class Metrics:
    """driftline's Prometheus metrics, bound to one registry; `publish` hands them a snapshot."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.latest = Snapshot()
        r.register(SnapshotCollector(lambda: self.latest))
        self.latency = Histogram(
            "driftline_processing_latency_seconds",
            "From an event's Kafka timestamp to the end of its processing (last of each batch).",
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.batch_seconds = Histogram(
            "driftline_batch_duration_seconds", "Time to process one polled batch.", registry=r,
        )
        self.label_delay = Histogram(
            "driftline_label_delay_seconds",
            "From an event's Kafka timestamp to its delayed label's.",
            buckets=(0.1, 1.0, 10.0, 60.0, 600.0, 3600.0, 21600.0, 86400.0, 604800.0), registry=r,
        )
        self.checkpoint_seconds = Histogram(
            "driftline_checkpoint_duration_seconds", "Time to write one checkpoint.",
            buckets=_CHECKPOINT_BUCKETS, registry=r,
        )

    def publish(self, snapshot: Snapshot) -> None:
        """Make `snapshot` the one scrapes and the status pages read."""
        self.latest = snapshot

    def observe_latency(self, seconds: Iterable[float]) -> None:
        for s in seconds:
            self.latency.observe(max(0.0, s))

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
