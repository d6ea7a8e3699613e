"""Delayed labels through the service over an in-memory topic: each event predicted on arrival,
scored on that prediction and learned when its label comes (joined by id), as River's
`progressive_val_score(..., delay=N)`; unknown, duplicate and expired labels."""

from __future__ import annotations

from river import evaluate as river_evaluate
from river import metrics

from consumers.deadletter import DeadLetters
from consumers.wire import encode
from driftline.config import DriftSettings, ModelSpec, Settings
from driftline.datasets import bundled
from driftline.learning import build_learner
from driftline.metrics import CollectorRegistry, Metrics
from driftline.publish import publish
from driftline.service import Service
from pipeline.evaluate import evaluate
from pipeline.pending import PendingLabels
from tests.integration.support import river_logistic_regression
from tests.memory import ListSink, ListSource

ONE = Settings(models=(ModelSpec("lr", "logistic_regression"),),
               drift=DriftSettings(detector="none", response="none"))


def served(values, pending=None, settings=ONE):
    registry = CollectorRegistry()
    sink = ListSink()
    service = Service(build_learner(settings), DeadLetters(sink, "events.dlq"), Metrics(registry),
                      pending=pending)
    source = ListSource("events", values, batch=97)
    while not source.exhausted():
        service.process(source.poll())
    return service, registry, sink


def test_labels_on_the_events_topic_equal_rivers_delayed_evaluation():
    rows = list(bundled("elec", limit=2000))
    values: list[bytes] = []
    publish(lambda v, k: values.append(v), rows, label_delay=100)
    assert len(values) == 4000
    service, registry, sink = served(values)
    accuracy = registry.get_sample_value("driftline_prequential_accuracy", {"model": "lr"})
    river = river_evaluate.progressive_val_score(
        rows, river_logistic_regression(), metrics.Accuracy(), delay=100
    ).get()
    ours = evaluate(build_learner(ONE), rows, delay=100)["models"]["lr"]["accuracy"]
    assert abs(accuracy - river) <= 1e-9 and abs(ours - river) <= 1e-9
    assert service.outcomes == {"learned": 2000, "unlabelled": 2000, "dead_lettered": 0}
    assert registry.get_sample_value("driftline_pending_labels") == 0
    assert sink.sent == []


def test_unknown_duplicate_and_expired_labels():
    values = [
        encode({"a": 1.0}, None, "e1"),
        encode({"a": 2.0}, None, "e2"),
        encode({"a": 3.0}, None, "e3"),  # pushes e1 out: at most two wait
        encode(None, 1, "e2"),
        encode(None, 0, "e2"),  # a second label
        encode(None, 1, "e1"),  # expired
        encode(None, 1, "nobody"),  # never seen
        encode({"a": 4.0}, None, "e3"),  # an id that waits already
    ]
    service, registry, sink = served(values, PendingLabels(max_pending=2))
    reasons = [dict(h)["driftline.reason"].decode() for _, _, _, h in sink.sent]
    assert reasons == ["duplicate_label", "unknown_id", "unknown_id", "duplicate_id"]
    assert registry.get_sample_value("driftline_labels_expired_total") == 1
    assert registry.get_sample_value("driftline_pending_labels") == 1  # e3
    assert service.outcomes["learned"] == 1


def test_pending_events_are_part_of_the_checkpointed_state():
    values = [encode({"a": float(i)}, None, f"e{i}") for i in range(10)]
    service, _, _ = served(values)
    state = service._state()
    assert len(state.pending) == 10
    restored, _, _ = served([])
    restored._carry_on_from(state)
    assert len(restored.pending) == 10
    restored.process(ListSource("events", [encode(None, 1, "e3")]).poll())
    assert restored.outcomes["learned"] == 1 and len(restored.pending) == 9
