"""The labels topic: the `[labels] topic` key, whether it is consumed, the co-partition check,
and labels read from it by the service over in-memory topics (joined by id, deferred while
their event is still to be read, dead letters naming the labels topic)."""

from __future__ import annotations

import pytest

from consumers.deadletter import DeadLetters
from consumers.wire import encode
from driftline.config import KafkaSettings, LabelsSettings, Settings, settings_from_dict
from driftline.errors import ConfigError
from driftline.labels import check_copartitioned, labels_topic
from driftline.learning import build_learner
from driftline.metrics import CollectorRegistry, Metrics
from driftline.service import Service
from tests.memory import ListSink, PartitionedSource
from tests.unit.test_delayed_labels import ONE

# --- the setting ----------------------------------------------------------------------------


def test_the_labels_topic_defaults_to_the_events_topic_dot_labels():
    assert Settings().labels_topic == "events.labels"
    assert settings_from_dict({"kafka": {"topic": "clicks"}}).labels_topic == "clicks.labels"
    assert settings_from_dict({"labels": {"topic": "truth"}}).labels_topic == "truth"
    assert settings_from_dict({"labels": {"topic": ""}}).labels_topic == ""


@pytest.mark.parametrize("value, message", [
    ("a b", "not a valid Kafka topic name"),
    (3, "expected a non-empty string"),
    ("events", "a topic of its own"),
    ("events.dlq", "a topic of its own"),
])
def test_a_bad_labels_topic_is_refused(value, message):
    with pytest.raises(ConfigError, match=rf"labels\.topic: .*{message}"):
        settings_from_dict({"labels": {"topic": value}})


# --- consumed or not, and the co-partition check ----------------------------------------------


def partitions(**topics: int):
    return lambda topic: list(range(topics.get(topic.replace(".", "_"), 0)))


def test_the_default_labels_topic_is_consumed_only_when_it_exists():
    assert labels_topic(Settings(), partitions(events=3)) is None
    assert labels_topic(Settings(), partitions(events=3, events_labels=3)) == "events.labels"


def test_a_labels_topic_turned_off_is_never_consumed():
    settings = Settings(labels=LabelsSettings(topic=""))
    assert labels_topic(settings, partitions(events=3, events_labels=3)) is None


def test_a_named_labels_topic_must_exist():
    settings = Settings(labels=LabelsSettings(topic="truth"))
    with pytest.raises(ConfigError, match=r"labels\.topic: topic truth does not exist"):
        labels_topic(settings, partitions(events=3))
    assert labels_topic(settings, partitions(events=3, truth=3)) == "truth"


def test_a_labels_topic_not_co_partitioned_is_refused_naming_both_topics_and_counts():
    with pytest.raises(ConfigError) as caught:
        labels_topic(Settings(kafka=KafkaSettings(topic="clicks")),
                     partitions(clicks=4, clicks_labels=2))
    message = str(caught.value)
    assert "clicks.labels has 2 partition(s) and clicks 4" in message
    assert "co-partitioned" in message
    check_copartitioned("a", 4, "b", 4)  # as many: fine


# --- the service reading a labels topic -----------------------------------------------------


def serve(events, labels, batch=50, timestamps=None):
    sink = ListSink()
    registry = CollectorRegistry()
    service = Service(build_learner(ONE), DeadLetters(sink, "events.dlq"), Metrics(registry),
                      labels_topic="events.labels")
    source = PartitionedSource("events", {0: events}, batch, on_assign=service.on_assign,
                               labels={0: labels}, labels_topic="events.labels",
                               timestamps=timestamps)
    service._behind = source.behind
    for _ in range(1000):
        service.process(source.poll())
        service._limit_held(source)
        if source.exhausted() and not source.paused and not service._held:
            break
    return service, sink, source


def test_labels_polled_ahead_of_their_events_wait_for_them_and_are_each_learned_once():
    # 200 events without an id first: every label is polled before its event (both topics
    # give 50 records a poll), though written after it: each label right after its event.
    inline = [encode({"a": float(i)}, i % 2) for i in range(200)]
    waiting = [encode({"a": float(i)}, None, f"e{i}") for i in range(100)]
    labels = [encode(None, i % 2, f"e{i}") for i in range(100)]
    written = {0: [10 * i for i in range(300)], -1: [10 * (200 + i) + 5 for i in range(100)]}
    service, sink, _ = serve(inline + waiting, labels, timestamps=written)
    assert sink.sent == []
    assert service.outcomes == {"learned": 300, "unlabelled": 100, "dead_lettered": 0}
    assert len(service.pending) == 0
    # Both partitions' offsets are the service's, the labels topic's as ~p.
    assert service.checkpointer.offsets == {0: 300, -1: 100}


def test_a_label_of_no_event_is_dead_lettered_naming_the_labels_topic():
    events = [encode({"a": 1.0}, None, "e1")]
    labels = [encode(None, 1, "e1"), encode(None, 1, "nobody"), encode({"a": 1.0}, 1, "e2"),
              encode(None, 0, "e1")]
    service, sink, _ = serve(events, labels)
    got = [(dict(h)["driftline.reason"], dict(h)["driftline.source.topic"],
            dict(h)["driftline.source.partition"], dict(h)["driftline.source.offset"])
           for _, _, _, h in sink.sent]
    assert got == [
        (b"unknown_id", b"events.labels", b"0", b"1"),
        (b"not_a_label", b"events.labels", b"0", b"2"),
        (b"duplicate_label", b"events.labels", b"0", b"3"),
    ]
    assert service.outcomes["learned"] == 1


def test_publish_sends_labels_apart_and_keys_events_and_labels_by_id():
    from driftline.publish import publish

    events: list[tuple[bytes, bytes | None]] = []
    labels: list[tuple[bytes, bytes | None]] = []
    rows = [({"a": float(i)}, i % 2) for i in range(5)]
    publish(lambda v, k: events.append((v, k)), rows, label_delay=2,
            send_label=lambda v, k: labels.append((v, k)))
    assert [k for _, k in events] == [b"e0", b"e1", b"e2", b"e3", b"e4"]
    assert [k for _, k in labels] == [b"e0", b"e1", b"e2", b"e3", b"e4"]
    assert all(b'"x"' not in v for v, _ in labels) and all(b'"y"' not in v for v, _ in events)


def test_partition_scope_kafka_store_keeps_each_partitions_waiting_events_through_a_restart():
    from tests.unit.test_fleet import ROWS, Broker, kafka_service, run

    events = {p: [encode(x, None, f"p{p}-e{i}") for i, (x, _) in enumerate(ROWS[p::2][:60])]
              for p in (0, 1)}
    labels = {p: [encode(None, y, f"p{p}-e{i}") for i, (_, y) in enumerate(ROWS[p::2][:40])]
              for p in (0, 1)}

    def source(service, upto_labels):
        made = PartitionedSource("events", events, 7, on_assign=service.on_assign,
                                 on_revoke=service.on_revoke, labels_topic="events.labels",
                                 labels={p: v[:upto_labels] for p, v in labels.items()})
        made.committed_offsets = broker.offsets
        return made

    broker = Broker(partitions=2)
    first, _ = kafka_service(broker)
    first.labels_topic = "events.labels"
    run(first, source(first, 20))
    assert broker.offsets == {0: 60, 1: 60, -1: 20, -2: 20}  # both topics' offsets committed
    second, txn = kafka_service(broker)  # a new process: everything from the state topic
    second.labels_topic = "events.labels"
    run(second, source(second, 40))
    assert second.outcomes == {"learned": 40, "unlabelled": 0, "dead_lettered": 0}
    assert {p: len(second.pending[p]) for p in (0, 1)} == {0: 20, 1: 20}  # type: ignore[index]
    assert second.pipeline.labelled == 80 and broker.offsets[-1] == broker.offsets[-2] == 40
    assert not [t for t, *_ in txn.pending if t == "events.dlq"]


def test_a_label_of_no_event_holds_up_neither_the_events_nor_the_labels_after_it():
    events = [encode({"a": float(i)}, None, f"e{i}") for i in range(300)]
    labels = [encode(None, 1, "nobody")] + [encode(None, i % 2, f"e{i}") for i in range(299)]
    written = {0: [10 * i for i in range(300)], -1: [15] + [10 * i + 5 for i in range(1, 300)]}
    service, sink, _ = serve(events, labels, timestamps=written)
    assert [dict(h)["driftline.reason"] for _, _, _, h in sink.sent] == [b"unknown_id"]
    assert service.outcomes == {"learned": 299, "unlabelled": 300, "dead_lettered": 1}


def test_a_label_read_before_its_event_waits_though_the_last_fetch_said_nothing_was_left():
    """The stale view: the events partition looked read to its end when the labels came (a
    fetch from before the events were written); only the broker, asked now, knows better."""
    events = [encode({"a": float(i)}, None, f"e{i}") for i in range(100)]
    labels = [encode(None, i % 2, f"e{i}") for i in range(100)]
    written = {0: [10 * i for i in range(100)], -1: [10 * i + 5 for i in range(100)]}

    class LateEvents(PartitionedSource):
        """Hands out the labels for three polls before any event; meanwhile its cheap view
        says the events partition has nothing left."""

        polls = 0

        def poll(self, timeout_ms: int = 0) -> list:
            self.polls += 1
            out = super().poll(timeout_ms)
            if self.polls <= 3:
                held = [r for r in out if r.topic == "events"]
                self.positions[0] -= len(held)  # not fetched yet after all
                out = [r for r in out if r.topic != "events"]
            return out

        def behind(self, partition: int) -> bool:
            return False if partition == 0 and self.polls <= 3 else super().behind(partition)

    sink = ListSink()
    service = Service(build_learner(ONE), DeadLetters(sink, "events.dlq"),
                      Metrics(CollectorRegistry()), labels_topic="events.labels")
    source = LateEvents("events", {0: events}, 10, on_assign=service.on_assign,
                        labels={0: labels}, labels_topic="events.labels", timestamps=written)
    service._behind, service._caught_up = source.behind, source.caught_up
    for _ in range(1000):
        service.process(source.poll())
        service._limit_held(source)
        if source.exhausted() and not service._held:
            break
    assert sink.sent == []  # no label dead-lettered as unknown_id
    assert service.outcomes == {"learned": 100, "unlabelled": 100, "dead_lettered": 0}
