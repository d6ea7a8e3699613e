"""Predictions, partition scope and the Kafka store's transactions, without a broker."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from consumers.deadletter import DeadLetters
from consumers.wire import encode
from driftline.checkpoint import Binding, CheckpointStore, State
from driftline.checkpointing import Checkpointer
from driftline.datasets import bundled
from driftline.errors import ConfigError
from driftline.learning import build_learner
from driftline.metrics import CollectorRegistry, Metrics
from driftline.predictions import Predictions
from driftline.scope import Partitioned
from driftline.service import Service
from driftline.state_store import KafkaStateStore
from pipeline.names import ENSEMBLE
from tests.memory import ListSink, PartitionedSource
from tests.unit.test_checkpointing import ONE

KEY = b"k" * 32
ROWS = list(bundled("elec", limit=400))
# Three partitions of one stream, with a bad message in partition 1.
PARTS = {
    0: [encode(x, y) for x, y in ROWS[:150]],
    1: [encode(x, y) for x, y in ROWS[150:250]] + [b"{not json"] + [encode(ROWS[250][0])],
    2: [encode(x, y) for x, y in ROWS[251:400]],
}


def reference(values: list[bytes]) -> list[tuple[Any, dict, str]]:
    """The predictions of one uninterrupted learner over one partition's events."""
    learner = build_learner(ONE)
    out = []
    for value in values:
        event = json.loads(value) if value.startswith(b'{"') else None
        if event is None:
            continue
        p = learner.step(event["x"], event.get("y")).prediction
        out.append((p.label, {str(k): v for k, v in p.proba.items()}, p.model))
    return out


def served(sink: ListSink, topic: str = "events.predictions") -> dict[int, list]:
    out: dict[int, list] = {}
    for t, value, _key, _headers in sink.sent:
        if t == topic:
            m = json.loads(value)
            out.setdefault(m["partition"], []).append((m["prediction"], m["proba"], m["model"]))
    return out


def run(service: Service, source: PartitionedSource) -> None:
    stop = threading.Event()
    original = source.poll

    def poll(timeout_ms: int = 0) -> list:
        out = original(timeout_ms)
        if source.exhausted():
            stop.set()
        return out

    source.poll = poll  # type: ignore[method-assign]
    service.run(source, stop)


def partition_service(sink: ListSink, checkpointer: Checkpointer, registry=None) -> Service:
    dead = DeadLetters(sink, "events.dlq")
    checkpointer.dead_letters = dead
    return Service(Partitioned(["lr"]), dead, Metrics(registry or CollectorRegistry()),
                   checkpointer=checkpointer, predictions=Predictions(sink, "events.predictions"),
                   new_learner=lambda: build_learner(ONE))


def test_global_scope_sends_one_prediction_per_event_keyed_like_it_and_counts_them():
    sink = ListSink()
    registry = CollectorRegistry()
    dead = DeadLetters(sink, "events.dlq")
    service = Service(build_learner(ONE), dead, Metrics(registry),
                      predictions=Predictions(sink, "events.predictions"))
    values = PARTS[0][:60]
    source = PartitionedSource("events", {0: values})
    source.on_assign = service.on_assign
    run(service, source)
    messages = [(json.loads(v), k) for t, v, k, _ in sink.sent if t == "events.predictions"]
    assert len(messages) == 60
    first, key = messages[0]
    assert key == b"k0-0"
    assert set(first) == {"id", "partition", "offset", "prediction", "proba", "model", "time"}
    assert [m["offset"] for m, _ in messages] == list(range(60))
    assert served(sink)[0] == reference(values)
    get = registry.get_sample_value
    ensemble_total = get("driftline_predictions_total", {"model": ENSEMBLE})
    right = sum(1 for (m, _), v in zip(messages, values, strict=True)
                if m["prediction"] == json.loads(v)["y"])
    assert get("driftline_predictions_correct_total", {"model": ENSEMBLE}) == right
    assert ensemble_total == sum(1 for m, _ in messages if m["prediction"] is not None)
    assert get("driftline_predictions_total", {"model": "lr"}) == ensemble_total


def test_partition_scope_learns_each_partition_on_its_own_and_labels_the_gauges(tmp_path):
    sink = ListSink()
    registry = CollectorRegistry()
    store = CheckpointStore(tmp_path, KEY, binding=Binding("events", "g"))
    service = partition_service(sink, Checkpointer(store, ListSink(), scope="partition"),
                                registry)
    source = PartitionedSource("events", PARTS, batch=7, on_assign=service.on_assign)
    run(service, source)
    got = served(sink)
    for p, values in PARTS.items():
        assert got[p] == reference(values), p
    get = registry.get_sample_value
    assert get("driftline_samples_learned", {"model": "lr", "partition": "0"}) == 150
    assert get("driftline_samples_learned", {"model": "lr", "partition": "2"}) == 149
    assert get("driftline_samples_learned", {"model": "lr"}) is None
    assert get("driftline_dead_letters_total", {"reason": "not_json"}) == 1


def test_partition_scope_restores_every_partition_from_the_file_store(tmp_path):
    store = CheckpointStore(tmp_path, KEY, binding=Binding("events", "g"))
    first = {p: v[:60] for p, v in PARTS.items()}
    service = partition_service(ListSink(), Checkpointer(store, ListSink(), scope="partition"))
    run(service, PartitionedSource("events", first, batch=9, on_assign=service.on_assign))
    sink = ListSink()
    again = partition_service(sink, Checkpointer(store, ListSink(), scope="partition"))
    assert again.restore()
    run(again, PartitionedSource("events", PARTS, batch=9, on_assign=again.on_assign))
    got = served(sink)
    for p, values in PARTS.items():
        assert got[p] == reference(values)[60:], p


def test_a_global_checkpoint_is_refused_in_partition_scope(tmp_path):
    store = CheckpointStore(tmp_path, KEY)
    Checkpointer(store, ListSink()).save(build_learner(ONE), outcomes={}, dead_letters={})
    with pytest.raises(ConfigError, match=r"checkpoint\.scope"):
        Checkpointer(store, ListSink(), scope="partition").restore(Partitioned(["lr"]))


# --- the Kafka store, over an in-memory broker with transactions -------------------------------


class Broker:
    """Committed records per (topic, partition), and the group's committed offsets."""

    def __init__(self, partitions: int = 3) -> None:
        self.topics: dict[tuple[str, int], list[tuple[bytes | None, bytes, dict]]] = {}
        self.partitions = partitions
        self.offsets: dict[int, int] = {}


class Transactions:
    def __init__(self, broker: Broker, fail_commits: int = 0) -> None:
        self.broker = broker
        self.in_transaction = False
        self.pending: list[tuple[str, int, bytes | None, bytes, dict]] = []
        self.fail_commits = fail_commits
        self.commits = 0

    def send(self, topic, value, key=None, headers=None, partition=None):
        self.in_transaction = True
        self.pending.append((topic, partition or 0, key, value, dict(headers or [])))

    def flush(self, timeout=None) -> None:
        pass

    def commit(self, topic, next_offsets, group_metadata, labels_topic=None) -> None:
        from consumers.errors import DeliveryFailed

        if self.fail_commits:
            self.fail_commits -= 1
            raise DeliveryFailed("fenced")
        for t, partition, key, value, headers in self.pending:
            self.broker.topics.setdefault((t, partition), []).append((key, value, headers))
        self.broker.offsets.update(next_offsets)
        self.pending = []
        self.in_transaction = False
        self.commits += 1

    def abort(self) -> None:
        self.pending = []
        self.in_transaction = False

    def committed_predictions(self) -> dict[int, list]:
        sink = ListSink()
        for (topic, _), records in sorted(self.broker.topics.items()):
            for key, value, headers in records:
                sink.send(topic, value, key, list(headers.items()))
        return served(sink)


class Reader:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def partitions(self) -> list[int]:
        return list(range(self.broker.partitions))

    def read(self, partition, timeout=60.0):
        records = self.broker.topics.get(("g.state", partition), [])
        return [(k, v, h, i) for i, (k, v, h) in enumerate(records)]


def kafka_service(broker: Broker, fail_commits: int = 0) -> tuple[Service, Transactions]:
    txn = Transactions(broker, fail_commits)
    store = KafkaStateStore(txn, Reader(broker), "g.state", KEY, Binding("events", "g"),
                            chunk_bytes=1000)  # several chunks per state
    checkpointer = Checkpointer(None, ListSink(), scope="partition", state_store=store,
                                transactions=txn, interval_seconds=0.0, restore_timeout=1.0)
    dead = DeadLetters(txn, "events.dlq")
    checkpointer.dead_letters = dead
    service = Service(Partitioned(["lr"]), dead, Metrics(CollectorRegistry()),
                      checkpointer=checkpointer, predictions=Predictions(txn, "events.predictions"),
                      new_learner=lambda: build_learner(ONE))
    return service, txn


def source_for(broker: Broker, service: Service, upto: int | None = None) -> PartitionedSource:
    parts = {p: v[:upto] for p, v in PARTS.items()} if upto else PARTS
    source = PartitionedSource("events", parts, batch=11, on_assign=service.on_assign,
                               on_revoke=service.on_revoke)
    source.committed_offsets = broker.offsets  # the group's, as the transactions commit them
    return source


def test_kafka_store_commits_states_offsets_and_outputs_together_and_restores_them():
    broker = Broker()
    first, txn = kafka_service(broker)
    run(first, source_for(broker, first, upto=70))
    assert txn.commits and broker.offsets == {0: 70, 1: 70, 2: 70}
    # A crash after learning more than was committed: that work is simply gone.
    crashed, crashed_txn = kafka_service(broker)
    source = source_for(broker, crashed, upto=90)
    source.poll()  # assigned: restored by the loop before its next batch
    crashed._restore_units(source)
    crashed._process(source.poll())  # learned and predicted, never committed
    assert crashed_txn.pending
    second, txn2 = kafka_service(broker)
    run(second, source_for(broker, second))
    predictions = txn2.committed_predictions()
    for p, values in PARTS.items():
        assert predictions[p] == reference(values), p
    dead = broker.topics[("events.dlq", 0)]
    assert len(dead) == 1


def test_kafka_store_aborts_and_rolls_back_when_a_commit_fails():
    broker = Broker()
    service, txn = kafka_service(broker, fail_commits=2)
    run(service, source_for(broker, service))
    predictions = txn.committed_predictions()
    for p, values in PARTS.items():
        assert predictions[p] == reference(values), p


def test_the_kafka_store_refuses_states_signed_with_another_key():
    broker = Broker()
    service, _ = kafka_service(broker)
    run(service, source_for(broker, service, upto=30))
    other = KafkaStateStore(Transactions(broker), Reader(broker), "g.state", b"x" * 32,
                            Binding("events", "g"))
    with pytest.raises(ConfigError, match="same key"):
        other.latest("partition-0")
    mine = KafkaStateStore(Transactions(broker), Reader(broker), "g.state", KEY,
                           Binding("events", "g"))
    found = mine.latest("partition-0")
    assert found is not None and isinstance(found[0], State) and found[0].offsets == {0: 30}


def test_one_owner_assignor_gives_everything_to_the_current_owner():
    from consumers.assignor import OWNER, OneOwnerAssignor

    class Member:
        def __init__(self, member_id, instance, owner=False):
            self.member_id = member_id
            self.group_instance_id = instance
            self.metadata = type("M", (), {"topics": ["events"],
                                           "user_data": OWNER if owner else b""})()

    class Cluster:
        def partitions_for_topic(self, topic):
            return {0, 1, 2, 3}

    assignor = OneOwnerAssignor()
    fresh = assignor.assign(Cluster(), [Member("m2", "b"), Member("m1", "a")])
    assert fresh["m1"].partitions() and not fresh["m2"].partitions()
    assert len(fresh["m1"].partitions()) == 4
    kept = assignor.assign(Cluster(), [Member("m2", "b", owner=True), Member("m1", "a")])
    assert len(kept["m2"].partitions()) == 4 and not kept["m1"].partitions()
    assignor.on_assignment(kept["m2"], 1)
    assert assignor.metadata({"events"}).user_data == OWNER


def test_the_page_status_shows_the_partitions_and_combines_their_models():
    from driftline.snapshot import Snapshot
    from pipeline.ensemble import ModelStats

    def stats(accuracy: float, tested: int) -> ModelStats:
        return ModelStats(accuracy=accuracy, rolling_accuracy=accuracy, tested=tested,
                          learned=tested, drifts=1, weight=1.0, last_drift_time=None)

    snapshot = Snapshot(scope="partition", assigned=(1, 4), started=0.0,
                        partition_models={1: {"lr": stats(0.5, 10)}, 4: {"lr": stats(1.0, 30)}})
    status = snapshot.status(1.0)
    assert status["partitions"] == [1, 4] and status["scope"] == "partition"
    assert status["models"]["lr"]["accuracy"] == pytest.approx(0.875)
    assert status["models"]["lr"]["tested"] == 40 and status["models"]["lr"]["drifts"] == 2
    assert set(status["partition_models"]) == {"1", "4"}


def test_predictions_forget_what_the_broker_acknowledged_and_still_report_a_failure():
    from kafka.future import Future

    from consumers.errors import DeliveryFailed
    from consumers.records import Record
    from driftline.predictions import SWEEP_EVERY
    from pipeline.ensemble import Prediction

    class AckingSink(ListSink):
        """Acknowledges each record 50 sends later; refuses the 100th."""

        def __init__(self) -> None:
            super().__init__()
            self.in_flight: list[Future] = []

        def send(self, topic, value, key=None, headers=None):  # type: ignore[override]
            super().send(topic, value, key, headers)
            future = Future()
            if len(self.sent) == 100:
                return future.failure(OSError("the broker refused it"))
            self.in_flight.append(future)
            if len(self.in_flight) > 50:
                self.in_flight.pop(0).success(None)
            return future

    predictions = Predictions(AckingSink(), "events.predictions")
    guess = Prediction(1, {1: 1.0}, "lr", (1,), 1)
    for offset in range(10 * SWEEP_EVERY):
        predictions.send(Record("events", 0, offset, b"{}"), None, guess)
        assert len(predictions._pending) < 2 * SWEEP_EVERY  # bounded by what is in flight
    with pytest.raises(DeliveryFailed, match=r"events\[0\]@99 .*the broker refused it"):
        predictions.flush()


def test_restored_partitions_show_their_figures_before_any_new_record():
    """Kafka store, partition scope: a restart with nothing left to read still publishes each
    partition's restored learner (its samples learned), not an empty page."""
    broker = Broker()
    first, _ = kafka_service(broker)
    run(first, source_for(broker, first))
    learned = {p: first.pipeline[p].stats()["lr"].learned for p in PARTS}
    second, _ = kafka_service(broker)
    source = source_for(broker, second)
    source.poll()  # assigned: restored by the loop before its next batch
    source.positions = {p: len(r) for p, r in source.records.items()}  # nothing new to read
    second._restore_units(source)
    assert {p: m["lr"].learned for p, m in second._partition_models.items()} == learned
    assert all(learned.values())


def test_join_watch_sees_an_assignment_neither_applied_nor_followed_by_a_new_join():
    """kafka-python 3.0 can drop a finished join (tests/integration/test_broker.py shows it);
    the watch flags an assignment not applied, but not one a new join replaced."""
    import time

    from kafka.coordinator.assignors.range import RangePartitionAssignor

    from consumers.assignor import JoinWatch

    class Cluster:
        def partitions_for_topic(self, topic):
            return {0, 1}

    member = type("Member", (), {"member_id": "m1", "group_instance_id": None,
                                 "metadata": RangePartitionAssignor.metadata({"events"})})()
    watch = JoinWatch(RangePartitionAssignor())
    assert watch.name == "range" and not watch.stalled(0.0)
    assignment = watch.assign(Cluster(), [member])["m1"]
    assert assignment.partitions() == [("events", 0), ("events", 1)]
    time.sleep(0.01)
    assert watch.stalled(0.0) and not watch.stalled(60.0)
    watch.on_assignment(assignment, 1)  # applied
    assert not watch.stalled(0.0)
    watch.assign(Cluster(), [member])
    watch.metadata({"events"})  # a JoinGroup request: a new join replaces the one assigned for
    assert not watch.stalled(0.0)
