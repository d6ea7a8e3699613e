"""The service loop over an in-memory topic: outcomes, metrics, dead letters, commits."""

import json
import threading
import time

import pytest

from consumers.deadletter import DeadLetters
from consumers.wire import encode
from driftline.config import DriftSettings, ModelSpec, Settings
from driftline.datasets import bundled
from driftline.learning import build_learner
from driftline.metrics import CollectorRegistry, Metrics
from driftline.service import Service
from pipeline.names import ENSEMBLE
from tests.memory import ListSink, ListSource

MODELS = [spec.name for spec in Settings().models]

ROWS = list(bundled("elec", limit=202))
LABELLED, UNLABELLED = ROWS[:200], ROWS[200:]

# (position in the topic, value, reason)
BAD = [
    (0, b"{not json", "not_json"),
    (3, b"", "empty"),
    (50, b'{"x": {"a": NaN}, "y": 1}', "not_finite"),
    (51, b'{"x": {"a": 1}, "y": {"class": 1}}', "bad_label"),
    (99, None, "empty"),
    (120, b'{"x": {"a": 1e999}, "y": 1}', "not_finite"),
    (150, encode({"a": 1}, 0.5), "not_a_class"),
]
UNLABELLED_AT = (10, 160)


def messages():
    """200 labelled Elec2 events, 2 unlabelled ones and the bad messages, interleaved."""
    values = [encode(x, y) for x, y in LABELLED]
    for at, (x, _) in zip(UNLABELLED_AT, UNLABELLED, strict=True):
        values.insert(at, encode(x))
    for at, value, _ in BAD:
        values.insert(at, value)
    return values


class StoppingSource(ListSource):
    """Sets `stop` once the last record was handed out."""

    def __init__(self, values, stop, batch):
        super().__init__("events", values, batch=batch)
        self.stop = stop

    def poll(self, timeout_ms=0):
        out = super().poll(timeout_ms)
        if self.exhausted():
            self.stop.set()
        return out


@pytest.fixture
def served():
    values = messages()
    stop = threading.Event()
    source = StoppingSource(values, stop, batch=50)
    sink = ListSink()
    metrics = Metrics(CollectorRegistry())
    service = Service(build_learner(Settings()), DeadLetters(sink, "t.dlq"), metrics)
    source.on_assign = service.on_assign
    service.run(source, stop, poll_timeout_ms=0)
    return values, source, sink, metrics.registry, service


def sample(registry, name, **labels):
    return registry.get_sample_value(name, labels)


def test_event_outcomes(served):
    _, _, _, registry, service = served
    assert sample(registry, "driftline_events_total", outcome="learned") == 200
    assert sample(registry, "driftline_events_total", outcome="unlabelled") == 2
    assert sample(registry, "driftline_events_total", outcome="dead_lettered") == len(BAD)
    assert service.outcomes == {"learned": 200, "unlabelled": 2, "dead_lettered": len(BAD)}


def test_dead_letters_by_reason(served):
    registry = served[3]
    reasons = [reason for _, _, reason in BAD]
    for reason in set(reasons):
        value = sample(registry, "driftline_dead_letters_total", reason=reason)
        assert value == reasons.count(reason), reason
    assert sample(registry, "driftline_dead_letters_total", reason="bad_id") == 0


def test_model_metrics_match_a_direct_run(served):
    _, _, _, registry, service = served
    reference = build_learner(Settings())  # the same events, in order, without the service
    for x, y in LABELLED[:10]:
        reference.step(x, y)
    reference.step(UNLABELLED[0][0])
    for x, y in LABELLED[10:159]:
        reference.step(x, y)
    reference.step(UNLABELLED[1][0])
    for x, y in LABELLED[159:]:
        reference.step(x, y)
    expected = reference.stats()
    assert service.pipeline.stats().keys() == expected.keys()
    for name in [*MODELS, ENSEMBLE]:
        stats = expected[name]
        assert sample(registry, "driftline_samples_learned", model=name) == 200
        assert sample(registry, "driftline_samples_learned", model=name) == stats.learned
        assert sample(registry, "driftline_samples_tested", model=name) == stats.tested
        assert sample(registry, "driftline_prequential_accuracy", model=name) == stats.accuracy
        assert sample(registry, "driftline_rolling_accuracy", model=name) == stats.rolling_accuracy
        assert sample(registry, "driftline_model_weight", model=name) == pytest.approx(stats.weight)
        drifts = sample(registry, "driftline_drift_detections_total", model=name) or 0
        assert drifts == stats.drifts


def test_prequential_accuracy_gauge_equals_snapshot(served):
    _, _, _, registry, service = served
    snapshot = service.pipeline.stats()
    for name in [*MODELS, ENSEMBLE]:
        value = sample(registry, "driftline_prequential_accuracy", model=name)
        assert value == snapshot[name].accuracy
        assert 0.5 < value <= 1.0


def test_dead_letters_carry_the_original_bytes_and_where_they_came_from(served):
    values, _, sink, _, _ = served
    # the positions in BAD are insertion points; find where each message ended up
    bad_offsets = [i for i, v in enumerate(values) if any(v is b for _, b, _ in BAD)]
    assert len(bad_offsets) == len(BAD)
    assert len(sink.sent) == len(BAD)
    by_value = {id(value): reason for _, value, reason in BAD}
    for offset, (topic, value, key, headers) in zip(bad_offsets, sink.sent, strict=True):
        original = values[offset]
        h = dict(headers)
        assert topic == "t.dlq"
        assert key is None
        assert value == (original or b"")
        assert h["driftline.reason"] == by_value[id(original)].encode()
        assert h["driftline.source.topic"] == b"events"
        assert h["driftline.source.partition"] == b"0"
        assert h["driftline.source.offset"] == str(offset).encode()
        assert h["driftline.detail"]
        assert int(h["driftline.time"]) > 0


def test_run_commits_every_message_and_closes(served):
    values, source, _, registry, _ = served
    assert source.closed
    assert source.exhausted()
    assert source.committed == {0: len(values)}
    batches = -(-len(values) // 50)
    assert sample(registry, "driftline_batch_duration_seconds_count") == batches


def test_status_is_json(served):
    service = served[4]
    status = json.loads(json.dumps(service.metrics.latest.status(time.time())))
    assert status["events"] == {"learned": 200, "unlabelled": 2, "dead_lettered": len(BAD)}
    assert set(status["models"]) == {*MODELS, ENSEMBLE}
    assert status["models"][ENSEMBLE]["learned"] == 200


def test_process_batches_without_run():
    values = messages()
    source = ListSource("events", values, batch=7)
    metrics = Metrics(CollectorRegistry())
    service = Service(build_learner(Settings()), DeadLetters(ListSink(), "t.dlq"), metrics)
    while not source.exhausted():
        service.process(source.poll())
    r = metrics.registry
    assert r.get_sample_value("driftline_events_total", {"outcome": "learned"}) == 200
    assert service.checkpointer.offsets == {0: len(values)}
    assert not source.closed
    assert source.committed == {}  # process never commits; run does


class RaisesOnRed:
    """A classifier with a bug: it raises on events whose feature "a" is "red"."""

    def predict_one(self, x):
        if x["a"] == "red":
            raise ValueError("cannot read red")
        return 1

    def learn_one(self, x, y):
        if x["a"] == "red":
            raise ValueError("cannot learn red")


def make_raises_on_red():
    return RaisesOnRed()


def test_an_event_that_the_only_model_raises_on_is_dead_lettered_and_the_service_goes_on():
    values = [encode({"a": 1.0}, 1), encode({"a": "red"}, 0), encode({"a": 2.0}, 1)]
    source = ListSource("events", values)
    sink = ListSink()
    registry = CollectorRegistry()
    settings = Settings(models=(ModelSpec("m", "tests.unit.test_service:make_raises_on_red"),),
                        drift=DriftSettings(detector="none", response="none"))
    service = Service(build_learner(settings), DeadLetters(sink, "events.dlq"), Metrics(registry))
    service.process(source.poll())
    assert registry.get_sample_value("driftline_dead_letters_total", {"reason": "model_error"}) == 1
    assert registry.get_sample_value("driftline_events_total", {"outcome": "learned"}) == 2
    assert registry.get_sample_value("driftline_model_failed", {"model": "m"}) == 0  # recovered
    [(_, value, _, headers)] = sink.sent
    assert value == values[1]
    assert b"m: ValueError: cannot read red" in dict(headers)["driftline.detail"]
    assert service.pipeline.stats()["m"].failures == 1
    assert service.checkpointer.offsets == {0: 3}


class BreaksOnSecondLearn:
    """A classifier with a bug: it raises the second time it learns."""

    def __init__(self) -> None:
        self.seen = 0

    def predict_one(self, x):
        return 1 if self.seen else None

    def learn_one(self, x, y):
        self.seen += 1
        if self.seen == 2:
            raise ZeroDivisionError("bug in learn_one")


def make_breaking():
    return BreaksOnSecondLearn()


def test_a_member_that_raises_is_not_set_aside_and_the_others_learn_the_event():
    values = [encode(x, y) for x, y in bundled("elec", limit=50)]
    source = ListSource("events", values)
    sink = ListSink()
    registry = CollectorRegistry()
    settings = Settings(models=(ModelSpec("nc", "no_change"),
                                ModelSpec("buggy", "tests.unit.test_service:make_breaking")),
                        drift=DriftSettings(detector="none", response="none"))
    service = Service(build_learner(settings), DeadLetters(sink, "events.dlq"), Metrics(registry))
    service.process(source.poll())
    assert registry.get_sample_value("driftline_model_failed", {"model": "buggy"}) == 0
    assert registry.get_sample_value("driftline_samples_learned", {"model": "nc"}) == 50
    assert registry.get_sample_value("driftline_samples_learned", {"model": "buggy"}) == 49
    assert registry.get_sample_value("driftline_events_total", {"outcome": "learned"}) == 50
    assert registry.get_sample_value("driftline_events_total", {"outcome": "dead_lettered"}) == 0
    assert sink.sent == []  # the other member learned the event: nothing is lost
    stats = service.pipeline.stats()
    assert stats["buggy"].failures == 1 and stats["buggy"].resets == {}


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_a_success():
    from driftline.backoff import Backoff

    backoff = Backoff(first=0.5, cap=4.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_a_kafka_error_rewinds_to_the_service_offsets_and_nothing_is_learned_twice():
    from consumers.errors import BrokerUnavailable

    class Flaky(ListSource):
        """Fails its third poll after moving its position past what it handed out."""

        def __init__(self, values, stop):
            super().__init__("events", values, batch=40)
            self.stop = stop
            self.polls = 0

        def poll(self, timeout_ms=0):
            self.polls += 1
            if self.polls == 3:
                self.position += 40  # fetched, never handed to the service
                raise BrokerUnavailable("poll events: the broker went away")
            out = super().poll(timeout_ms)
            if self.exhausted():
                self.stop.set()
            return out

    values = [encode(x, y) for x, y in LABELLED]
    stop = threading.Event()
    metrics = Metrics(CollectorRegistry())
    service = Service(build_learner(Settings()), DeadLetters(ListSink(), "t.dlq"), metrics)
    source = Flaky(values, stop)
    source.on_assign = service.on_assign
    service.run(source, stop, poll_timeout_ms=0)
    assert service.outcomes["learned"] == len(values)
    assert service.pipeline.stats()[ENSEMBLE].learned == len(values)


def test_the_loop_publishes_at_most_every_half_second_and_at_once_when_idle(monkeypatch):
    """At a low rate each poll brings a few events: the snapshot (the models' figures, F1 and
    recall over rolling windows, with the counters) is made at most every `STATS_EVERY`
    seconds while events keep coming, and at once when a poll finds nothing, so that an idle
    service shows all it learned."""
    import driftline.service

    # 2 s instead of 0.5, so that a slow machine still learns 100 events within it
    monkeypatch.setattr(driftline.service, "STATS_EVERY", 2.0)
    values = [encode(x, y) for x, y in ROWS[:200]]
    stop = threading.Event()
    seen = []  # (records handed out, tested as published, learned as published) at each poll

    class Watching(ListSource):
        def poll(self, timeout_ms=0):
            latest = metrics.latest
            seen.append((self.position, latest.models[ENSEMBLE].tested,
                         latest.outcomes["learned"]))
            if len(seen) == 3:
                time.sleep(2.1)  # this poll waits: the snapshot after its batch is due
            if len(seen) == 6:
                stop.set()
            return super().poll(timeout_ms)

    source = Watching("events", values, batch=50)
    metrics = Metrics(CollectorRegistry())
    service = Service(build_learner(Settings()), DeadLetters(ListSink(), "t.dlq"), metrics)
    source.on_assign = service.on_assign
    service.run(source, stop, poll_timeout_ms=0)
    # Two batches within the interval from the start: not published; the third came after
    # a wait: published (149 tested: the very first event has no prediction); the fourth
    # not; after the empty fifth poll, all of it. Figures and counters are of one moment.
    assert seen == [(0, 0, 0), (50, 0, 0), (100, 0, 0), (150, 149, 150), (200, 149, 150),
                    (200, 199, 200)]


def test_predictions_are_counted_per_model_and_for_the_ensemble():
    """Per model and for the ensemble: a prediction counts where one was made (not None), and
    is right where it equals the label; counted a batch at a time."""
    import random

    from pipeline.ensemble import Prediction

    settings = Settings()
    service = Service(build_learner(settings), DeadLetters(ListSink(), "events.dlq"),
                      Metrics(CollectorRegistry()), settings.validation.decoder())
    names = [*MODELS, ENSEMBLE]
    before = {n: (service.predicted[n], service.correct[n]) for n in names}
    rng = random.Random(3)
    labels = [0, 1, "a", True, None]
    pairs = []
    for _ in range(500):
        members = tuple(rng.choice(labels) for _ in MODELS)
        label = rng.choice(labels)
        pairs.append((Prediction(label, {}, ENSEMBLE, members, label), rng.choice([0, 1, "a"])))
    expected = {n: [0, 0] for n in names}
    for prediction, y in pairs:
        for name, guess in [*zip(MODELS, prediction.members, strict=True),
                            (ENSEMBLE, prediction.label)]:
            if guess is not None:
                expected[name][0] += 1
                expected[name][1] += guess == y
    service._score_all(pairs[:200])
    service._score_all(pairs[200:])
    for n in names:
        got = (service.predicted[n] - before[n][0], service.correct[n] - before[n][1])
        assert got == tuple(expected[n]), n
