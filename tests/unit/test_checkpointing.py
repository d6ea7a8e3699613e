"""The Checkpointer: cadence, flush-then-save, seek on assignment, restore, rewind, commits; and
a service over an in-memory topic that is stopped, restarted and rebalanced learns every event
exactly once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from consumers.deadletter import DeadLetters
from consumers.records import Record
from consumers.wire import Rejection, encode
from driftline.checkpoint import CheckpointStore, State
from driftline.checkpointing import Checkpointer
from driftline.config import DriftSettings, ModelSpec, Settings
from driftline.datasets import bundled
from driftline.errors import ConfigError
from driftline.learning import build_learner
from driftline.metrics import CollectorRegistry, Metrics
from driftline.service import Service
from tests.memory import ListSink, ListSource

KEY = b"k" * 32
ONE = Settings(models=(ModelSpec("lr", "logistic_regression"),),
               drift=DriftSettings(detector="none", response="none"))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Journal:
    """A dead-letter sink and a checkpoint store that write down the order of calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.directory = "nowhere"

    def flush(self) -> None:
        self.calls.append("flush")

    def save(self, state: State, body: bytes | None = None) -> Path:
        self.calls.append(f"save {state.offsets}")
        return Path("checkpoint-000000000001.ckpt")

    def load_latest(self) -> None:
        return None


def save(checkpointer: Checkpointer, pipeline=None) -> None:
    checkpointer.save(pipeline or build_learner(ONE), outcomes={},
                      dead_letters={})


def test_saves_at_the_interval_and_skips_when_nothing_is_new():
    clock = Clock()
    journal = Journal()
    checkpointer = Checkpointer(journal, journal, interval_seconds=5.0, clock=clock)  # type: ignore[arg-type]
    checkpointer.offsets[0] = 10
    assert not checkpointer.due()  # not yet
    clock.now += 5.0
    assert checkpointer.due()
    save(checkpointer)
    assert journal.calls == ["flush", "save {0: 10}"]
    clock.now += 5.0
    assert not checkpointer.due()  # nothing consumed since: the last file is the whole state
    assert checkpointer.saved_time is not None
    checkpointer.offsets[0] = 11
    clock.now += 4.9
    assert not checkpointer.due()
    clock.now += 0.1
    assert checkpointer.due()


def test_dead_letters_are_flushed_before_every_save(tmp_path):
    sink = ListSink()
    store = CheckpointStore(tmp_path, KEY)
    flushes_at_save = []
    original = store.save

    def recording_save(state, body=None):
        flushes_at_save.append(sink.flushes)
        return original(state, body)

    store.save = recording_save  # type: ignore[method-assign]
    dead_letters = DeadLetters(sink, "events.dlq")
    checkpointer = Checkpointer(store, dead_letters)
    for offset in (0, 1):
        dead_letters.send(Record("events", 0, offset, b"{"), Rejection("not_json", "x"))
        save(checkpointer)
    assert flushes_at_save == [1, 2]
    save(checkpointer)  # nothing sent since the last flush: nothing to wait for
    assert flushes_at_save == [1, 2, 2]


def test_without_a_store_offsets_are_kept_and_nothing_is_written(tmp_path):
    sink = ListSink()
    dead_letters = DeadLetters(sink, "events.dlq")
    checkpointer = Checkpointer(None, dead_letters)
    checkpointer.offsets[0] = 5
    dead_letters.send(Record("events", 0, 4, b"{"), Rejection("not_json", "x"))
    save(checkpointer)
    assert checkpointer.restore(build_learner(ONE)) is None
    assert checkpointer.saved_time is None
    assert sink.flushes == 1


@pytest.mark.parametrize(("reset", "expected"), [("earliest", 0), ("latest", 3)])
def test_an_assigned_partition_starts_at_the_checkpoint_else_at_the_reset(reset, expected):
    source = ListSource("events", [b"a", b"b", b"c"])
    source.assigned = True
    source.position = 2  # where the group's committed offset would put it
    checkpointer = Checkpointer(None, ListSink(), offset_reset=reset)
    checkpointer.on_assign(source, [0])
    assert source.position == expected
    checkpointer.offsets[0] = 1
    checkpointer.on_assign(source, [0])
    assert source.position == 1


def test_restore_adopts_the_offsets_in_place_and_refuses_other_models(tmp_path):
    store = CheckpointStore(tmp_path, KEY)
    pipeline = build_learner(ONE)
    for x, y in bundled("elec", limit=20):
        pipeline.step(x, y)
    writer = Checkpointer(store, ListSink())
    writer.offsets.update({0: 20, 1: 3})
    writer.save(pipeline, outcomes={"learned": 20},
                dead_letters={"not_json": 2})

    reader = Checkpointer(store, ListSink())
    offsets = reader.offsets  # the loop holds this very dict
    state = reader.restore(build_learner(ONE))
    assert state is not None
    assert offsets == reader.restored_offsets == {0: 20, 1: 3}
    assert state.pipeline.stats() == pipeline.stats()
    assert (state.outcomes, state.dead_letters) == ({"learned": 20}, {"not_json": 2})
    assert reader.saved_time == state.created

    other = Settings(models=(ModelSpec("nb", "gaussian_nb"),))
    with pytest.raises(ConfigError, match=r"\[\[models\]\].*'nb'.*'lr'"):
        Checkpointer(store, ListSink()).restore(build_learner(other))


def test_rewind_seeks_back_and_skips_partitions_no_longer_assigned():
    source = ListSource("events", [b"a", b"b", b"c"])
    source.assigned = True
    source.position = 3
    checkpointer = Checkpointer(None, ListSink())
    checkpointer.offsets.update({0: 1, 7: 4})  # partition 7 went to another member
    checkpointer.rewind(source)
    assert source.position == 1


def test_group_commits_are_at_most_once_a_second_unless_waited_for():
    clock = Clock()
    source = ListSource("events", [])
    checkpointer = Checkpointer(None, ListSink(), clock=clock)
    checkpointer.commit(source)
    assert source.committed == {}  # nothing consumed, nothing to commit
    checkpointer.offsets[0] = 1
    checkpointer.commit(source)
    checkpointer.offsets[0] = 2
    checkpointer.commit(source)
    assert source.committed == {0: 1}
    checkpointer.commit(source, wait=True)
    assert source.committed == {0: 2}
    checkpointer.offsets[0] = 3
    clock.now += 1.0
    checkpointer.commit(source)
    assert source.committed == {0: 3}


# --- a service over an in-memory topic --------------------------------------------------------

VALUES = [encode(x, y) for x, y in bundled("elec", limit=300)]


class StopAt(ListSource):
    """Sets `stop` once `at` records were handed out."""

    def __init__(self, values, stop: threading.Event, at: int, **callbacks):
        super().__init__("events", values, batch=40, **callbacks)
        self.stop = stop
        self.at = at

    def poll(self, timeout_ms=0):
        out = super().poll(timeout_ms)
        if self.position >= self.at:
            self.stop.set()
        return out


def serve_once(store: CheckpointStore, until: int, registry: CollectorRegistry) -> Service:
    """A service started from the store's checkpoint, stopped after `until` records."""
    dead_letters = DeadLetters(ListSink(), "events.dlq")
    service = Service(build_learner(ONE), dead_letters, Metrics(registry),
                      checkpointer=Checkpointer(store, dead_letters))
    service.restore()
    stop = threading.Event()
    source = StopAt(VALUES, stop, until, on_assign=service.on_assign,
                    on_revoke=service.on_revoke)
    service.run(source, stop, poll_timeout_ms=0)
    return service


def test_a_stopped_and_restarted_service_learns_every_event_once(tmp_path):
    store = CheckpointStore(tmp_path, KEY)
    first = serve_once(store, 120, CollectorRegistry())
    assert first.checkpointer.offsets == {0: 120}
    registry = CollectorRegistry()
    second = serve_once(store, 300, registry)  # seeks to 120 on assignment, not to 0
    reference = build_learner(ONE)
    for x, y in bundled("elec", limit=300):
        reference.step(x, y)
    assert second.pipeline.stats() == reference.stats()
    assert registry.get_sample_value("driftline_events_total", {"outcome": "learned"}) == 300
    assert registry.get_sample_value(
        "driftline_checkpoint_restored_offset", {"partition": "0"}) == 120


def test_a_revocation_checkpoints_before_the_partition_goes(tmp_path):
    store = CheckpointStore(tmp_path, KEY)
    dead_letters = DeadLetters(ListSink(), "events.dlq")
    service = Service(build_learner(ONE), dead_letters, Metrics(CollectorRegistry()),
                      checkpointer=Checkpointer(store, dead_letters, interval_seconds=3600))
    source = ListSource("events", VALUES, batch=50, on_assign=service.on_assign,
                        on_revoke=service.on_revoke, on_lost=service.on_lost)
    service.process(source.poll())
    assert store.files() == []
    source.revoke()
    loaded = store.load_latest()
    assert loaded is not None and loaded[0].offsets == {0: 50}
    service.process(source.poll())  # assigned again: from the checkpoint, so 50..99
    source.revoke(lost=True)
    loaded = store.load_latest()
    assert loaded is not None and loaded[0].offsets == {0: 100}
    assert loaded[0].pipeline.stats()["lr"].learned == 100


def test_a_background_save_pickles_now_writes_in_order_and_reports_a_failure_later(tmp_path):
    """The periodic save: the state as it was at the call, written by another thread while
    the caller goes on; the next save waits for it; its failure is raised at the next save."""
    store = CheckpointStore(tmp_path, KEY)
    gate = threading.Event()
    written: list[dict[int, int]] = []
    save_file = store.save

    def slow_save(state: State, body: bytes | None = None) -> Path:
        gate.wait(10)
        written.append(dict(state.offsets))
        return save_file(state, body)

    store.save = slow_save  # type: ignore[method-assign]
    checkpointer = Checkpointer(store, ListSink())
    pipeline = build_learner(ONE)
    checkpointer.offsets.update({0: 10})
    checkpointer.save(pipeline, outcomes={}, dead_letters={}, background=True)
    assert written == [] and checkpointer._saved_offsets == {}  # the caller did not wait
    for x, y in bundled("elec", limit=30):  # the state moves on meanwhile
        pipeline.step(x, y)
    checkpointer.offsets.update({0: 40})
    gate.set()
    checkpointer.save(pipeline, outcomes={}, dead_letters={})  # waits for the first, then writes
    assert written == [{0: 10}, {0: 40}] and checkpointer._saved_offsets == {0: 40}
    state = Checkpointer(store, ListSink()).restore(build_learner(ONE))
    assert state is not None and state.pipeline.labelled == 30
    max(store.files(), key=lambda path: path.name).unlink()  # the first file: pickled at its call
    state = Checkpointer(store, ListSink()).restore(build_learner(ONE))
    assert state is not None and state.pipeline.labelled == 0 and state.offsets == {0: 10}

    def failing_save(state: State, body: bytes | None = None) -> Path:
        raise OSError("disk full")

    store.save = failing_save  # type: ignore[method-assign]
    checkpointer.offsets.update({0: 50})
    checkpointer.save(pipeline, outcomes={}, dead_letters={}, background=True)
    with pytest.raises(OSError, match="disk full"):
        checkpointer.settle()
    checkpointer.settle()  # raised once
