"""The metrics: read from the published snapshot at scrape time, every series from the start, and
the README's table in step with what the registry exports."""

from __future__ import annotations

import math
import re
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from consumers.deadletter import DeadLetters
from consumers.wire import REASONS, encode
from driftline.learning import build_learner
from driftline.metrics import CollectorRegistry, Metrics, SnapshotCollector
from driftline.service import Service
from driftline.snapshot import OUTCOMES, Snapshot
from pipeline.ensemble import ModelStats
from pipeline.names import ENSEMBLE
from tests.memory import ListSink, ListSource
from tests.unit.test_checkpointing import ONE, VALUES, StopAt

README = Path(__file__).resolve().parents[2] / "README.md"


def stats(accuracy: float | None = 0.75, drifts: int = 0) -> ModelStats:
    return ModelStats(accuracy=accuracy, rolling_accuracy=accuracy, tested=4, learned=5,
                      drifts=drifts, weight=1.0, last_drift_time=None)


def test_a_fresh_metrics_shows_every_dead_letter_reason_and_every_outcome_at_zero():
    registry = CollectorRegistry()
    Metrics(registry)
    for reason in REASONS:
        assert registry.get_sample_value("driftline_dead_letters_total", {"reason": reason}) == 0
    for outcome in OUTCOMES:
        assert registry.get_sample_value("driftline_events_total", {"outcome": outcome}) == 0
    assert "model_error" in REASONS
    assert math.isnan(registry.get_sample_value("driftline_checkpoint_age_seconds"))


def test_values_are_read_from_the_latest_published_snapshot_at_scrape_time():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    first = Snapshot(models={"lr": stats(0.5, drifts=2), ENSEMBLE: stats(0.5)},
                     outcomes={"learned": 7, "unlabelled": 1, "dead_lettered": 2},
                     dead_letters={**dict.fromkeys(REASONS, 0), "not_json": 2},
                     lag={0: 12, 3: 0}, restored_offsets={0: 40})
    metrics.publish(first)
    get = registry.get_sample_value
    assert get("driftline_prequential_accuracy", {"model": "lr"}) == 0.5
    assert get("driftline_drift_detections_total", {"model": "lr"}) == 2
    assert get("driftline_events_total", {"outcome": "learned"}) == 7
    assert get("driftline_dead_letters_total", {"reason": "not_json"}) == 2
    assert get("driftline_consumer_lag", {"partition": "3"}) == 0
    assert get("driftline_consumer_lag", {"partition": "0"}) == 12
    assert get("driftline_checkpoint_restored_offset", {"partition": "0"}) == 40
    assert get("driftline_model_failed", {"model": "lr"}) == 0
    metrics.publish(replace(first, models={"lr": replace(stats(0.8), failed=True)},
                            outcomes={**first.outcomes, "learned": 9}))
    assert get("driftline_prequential_accuracy", {"model": "lr"}) == 0.8
    assert get("driftline_model_failed", {"model": "lr"}) == 1
    assert get("driftline_events_total", {"outcome": "learned"}) == 9
    assert get("driftline_prequential_accuracy", {"model": ENSEMBLE}) is None  # no longer there


def test_a_model_not_yet_tested_has_no_accuracy_series():
    registry = CollectorRegistry()
    Metrics(registry).publish(Snapshot(models={"lr": stats(None)}))
    assert registry.get_sample_value("driftline_prequential_accuracy", {"model": "lr"}) is None
    assert registry.get_sample_value("driftline_samples_learned", {"model": "lr"}) == 5


def test_the_checkpoint_age_is_computed_when_scraped():
    registry = CollectorRegistry()
    now = [1000.0]
    snapshot = Snapshot(checkpoint_time=990.0)
    registry.register(SnapshotCollector(lambda: snapshot, clock=lambda: now[0]))
    assert registry.get_sample_value("driftline_checkpoint_age_seconds") == 10.0
    now[0] = 1004.5
    assert registry.get_sample_value("driftline_checkpoint_age_seconds") == 14.5


def test_a_second_collector_of_the_same_names_is_refused():
    registry = CollectorRegistry()
    Metrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(SnapshotCollector(Snapshot))


def test_status_and_readiness_come_from_the_same_snapshot():
    snapshot = Snapshot(models={"lr": stats(0.5)}, started=100.0, last_poll=104.0,
                        assigned=(0,), checkpoint_time=101.0, lag={0: 3})
    status = snapshot.status(105.0)
    assert status == {
        "uptime_seconds": 5.0,
        "events": dict.fromkeys(OUTCOMES, 0),
        "lag": {"0": 3},
        "checkpoint": {"age_seconds": 4.0},
        "models": {"lr": {**stats(0.5).__dict__}},
        "scope": "global",
        "partitions": [0],
        "partition_models": {},
        "predictions": {},
    }
    assert snapshot.ready(105.0)
    assert not snapshot.ready(114.0)  # no successful poll for 10 s
    assert not replace(snapshot, assigned=()).ready(105.0)
    assert Snapshot().status(105.0) == {}  # no service yet


def test_a_restarted_service_carries_its_counters_on(tmp_path):
    from driftline.checkpoint import CheckpointStore
    from driftline.checkpointing import Checkpointer

    store = CheckpointStore(tmp_path, b"k" * 32)
    values = [b"{not json", *VALUES[:20]]
    first = Service(build_learner(ONE), DeadLetters(ListSink(), "d"), Metrics(CollectorRegistry()),
                    checkpointer=Checkpointer(store, ListSink()))
    first.process(ListSource("events", values).poll())
    first.checkpoint()
    registry = CollectorRegistry()
    second = Service(build_learner(ONE), DeadLetters(ListSink(), "d"), Metrics(registry),
                     checkpointer=Checkpointer(store, ListSink()))
    second.restore()
    get = registry.get_sample_value
    assert get("driftline_events_total", {"outcome": "learned"}) == 20
    assert get("driftline_events_total", {"outcome": "dead_lettered"}) == 1
    assert get("driftline_dead_letters_total", {"reason": "not_json"}) == 1
    assert get("driftline_dead_letters_total", {"reason": "empty"}) == 0
    assert get("driftline_samples_learned", {"model": "lr"}) == 20


# --- the README's table -----------------------------------------------------------------------


def readme_metrics() -> set[str]:
    text = README.read_text()
    table = text[text.index("## Metrics"):]
    table = table[: table.index("\n\n", table.index("| metric"))]
    return set(re.findall(r"^\| `(driftline_[a-z0-9_]+)` \|", table, re.MULTILINE))


def exported_metrics() -> set[str]:
    """What a registry exports after a few events of every kind, as the README names them."""
    registry = CollectorRegistry()
    values = [*VALUES[:30], b"", b"{not json", encode({"a": 1.0})]
    service = Service(build_learner(ONE), DeadLetters(ListSink(), "d"), Metrics(registry))
    stop = threading.Event()
    service.run(StopAt(values, stop, len(values), on_assign=service.on_assign), stop)
    names = set()
    for family in registry.collect():
        if family.samples:
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_every_exported_metric_is_in_the_readme_table():
    assert exported_metrics() - readme_metrics() == set()


def test_every_metric_in_the_readme_table_is_exported():
    exported = exported_metrics()
    # The last drift's time exists once a model has drifted, the restored offsets once a
    # checkpoint was restored: their families are registered all the same.
    registry = CollectorRegistry()
    Metrics(registry)
    registered = {f.name + ("_total" if f.type == "counter" else "") for f in registry.collect()}
    assert readme_metrics() - registered == set()
    assert readme_metrics() - exported <= {
        "driftline_last_drift_timestamp_seconds",
        "driftline_checkpoint_restored_offset",
    }


def test_f1_recall_failures_and_resets_are_exported_per_model_and_class():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    recall = {"a": 0.5, "b": 1.0}
    model = replace(stats(), f1=0.6, rolling_f1=0.7, recall=recall, rolling_recall=recall,
                    failures=3, resets={"failures": 1})
    metrics.publish(Snapshot(models={"m": model, ENSEMBLE: stats()}))
    get = registry.get_sample_value
    assert get("driftline_prequential_f1", {"model": "m"}) == 0.6
    assert get("driftline_rolling_f1", {"model": "m"}) == 0.7
    assert get("driftline_prequential_recall", {"model": "m", "class": "a"}) == 0.5
    assert get("driftline_rolling_recall", {"model": "m", "class": "b"}) == 1.0
    assert get("driftline_model_failures_total", {"model": "m"}) == 3
    assert get("driftline_model_resets_total", {"model": "m", "reason": "failures"}) == 1
    for reason in ("drift", "non_finite"):  # every reason from the start
        assert get("driftline_model_resets_total", {"model": "m", "reason": reason}) == 0


def test_classes_of_the_same_text_get_series_of_their_own():
    """The label 1 and the label "1" (a producer that mixes them): two classes, so two series;
    one `class="1"` label for both would be two samples of one series, and Prometheus keeps
    only the first."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    recall = {1: 0.25, "1": 0.75, "a": 1.0}
    metrics.publish(Snapshot(models={"m": replace(stats(), recall=recall, rolling_recall=recall)}))
    get = registry.get_sample_value
    assert get("driftline_prequential_recall", {"model": "m", "class": "1"}) == 0.75
    assert get("driftline_prequential_recall", {"model": "m", "class": "1 (int)"}) == 0.25
    assert get("driftline_rolling_recall", {"model": "m", "class": "a"}) == 1.0


def test_per_class_series_stop_past_the_documented_limit():
    from driftline.metrics import MAX_CLASS_SERIES

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    many = {f"c{i}": 0.5 for i in range(MAX_CLASS_SERIES + 1)}
    few = {f"c{i}": 0.5 for i in range(MAX_CLASS_SERIES)}
    metrics.publish(Snapshot(models={
        "many": replace(stats(), recall=many, rolling_recall=many),
        "few": replace(stats(), recall=few, rolling_recall=few),
    }))
    assert registry.get_sample_value("driftline_prequential_recall",
                                     {"model": "many", "class": "c0"}) is None
    assert registry.get_sample_value("driftline_prequential_recall",
                                     {"model": "few", "class": "c0"}) == 0.5
