"""Dead letters without a broker: bounded headers and values, bounded log lines, and delivery
checked future by future (the same through a real broker: tests/integration/test_dead_letters.py).
"""

from __future__ import annotations

import logging

import pytest

from consumers.deadletter import (
    DEAD_LETTER_MAX_BYTES,
    MAX_DETAIL_BYTES,
    PRODUCER_MAX_REQUEST_SIZE,
    DeadLetters,
    DeadLettersLost,
    dead_letter_headers,
)
from consumers.records import Record
from consumers.wire import Decoder, Rejection
from tests.memory import ListSink


def record_size(value, headers):
    return len(value) + sum(len(k) + len(v) for k, v in headers)


def test_a_600_kB_feature_name_makes_a_dead_letter_under_the_broker_limit():
    value = b'{"x": {"' + b"n" * 600_000 + b'": null}}'
    rejection = Decoder().decode(value)
    assert rejection.reason == "too_long"
    sink = ListSink()
    DeadLetters(sink, "t.dlq").send(Record("events", 0, 7, value), rejection)
    [(_, sent, _, headers)] = sink.sent
    assert sent == value  # it fits whole
    assert record_size(sent, headers) < DEAD_LETTER_MAX_BYTES < PRODUCER_MAX_REQUEST_SIZE


def test_a_huge_detail_is_cut_with_a_marker_and_the_value_makes_room():
    detail = "é" * 2_000_000  # a model's exception message, say
    value = b"v" * 999_000
    sink = ListSink()
    dead = DeadLetters(sink, "t.dlq", max_bytes=100_000_000)  # a wide max_message_bytes
    dead.send(Record("events", 3, 11, value), Rejection("model_error", detail))
    [(_, sent, _, headers)] = sink.sent
    h = dict(headers)
    assert len(h["driftline.detail"]) <= MAX_DETAIL_BYTES
    assert h["driftline.detail"].endswith(b"...[cut]")
    h["driftline.detail"].decode("utf-8")  # never half a character
    assert record_size(sent, headers) <= DEAD_LETTER_MAX_BYTES
    assert sent == value[: len(sent)] and len(sent) > 990_000
    assert h["driftline.value.bytes"] == b"999000"  # the original size, when cut
    assert h["driftline.source.partition"] == b"3" and h["driftline.source.offset"] == b"11"


def test_headers_of_a_short_rejection_are_whole():
    headers = dict(dead_letter_headers(Record("events", 0, 1, b"{}"), Rejection("not_json", "why")))
    assert headers["driftline.detail"] == b"why" and "driftline.value.bytes" not in headers


def test_each_dead_letter_logs_at_most_200_chars_of_detail(caplog):
    caplog.set_level(logging.WARNING, logger="consumers.deadletter")
    dead = DeadLetters(ListSink(), "t.dlq")
    dead.send(Record("events", 0, 5, b"x"), Rejection("model_error", "boom " * 100_000))
    [line] = [r.getMessage() for r in caplog.records]
    assert "events[0]@5" in line and "model_error" in line
    assert len(line) < 300


class Future:
    def __init__(self, error=None, done=True):
        self.is_done = done
        self.exception = error

    def failed(self):
        return self.is_done and self.exception is not None


class FutureSink(ListSink):
    """Hands back futures: those of the offsets in `fail` fail, those in `hang` never finish."""

    def __init__(self, fail=(), hang=()):
        super().__init__()
        self.fail, self.hang = set(fail), set(hang)

    def send(self, topic, value, key=None, headers=None):
        super().send(topic, value, key, headers)
        offset = int(dict(headers)["driftline.source.offset"])
        if offset in self.hang:
            return Future(done=False)
        return Future(RuntimeError("refused: too large") if offset in self.fail else None)


def test_flush_raises_delivery_failed_naming_the_source_of_the_first_failure():
    dead = DeadLetters(FutureSink(fail={12, 9}, hang={20}), "t.dlq")
    for offset in (3, 9, 12, 20):
        dead.send(Record("events", 1, offset, b"x"), Rejection("not_json", "x"))
    with pytest.raises(DeadLettersLost) as info:
        dead.flush()
    failed = info.value
    assert (failed.topic, failed.partition, failed.offset) == ("events", 1, 9)
    assert "RuntimeError: refused: too large" in failed.reason
    assert [f[2] for f in failed.failures] == [9, 12, 20]
    assert "in time" in failed.failures[2][3]
    assert failed.first_failed_offsets() == {("events", 1): 9}
    assert "events[1]@9" in str(failed)
    # sticky: a second flush (before a shutdown checkpoint, say) raises the same again
    with pytest.raises(DeadLettersLost) as again:
        dead.flush()
    assert again.value.offset == 9 and len(again.value.failures) == 3
    dead.clear_failures()  # the caller rewound to before offset 9
    dead.flush()  # each future is checked once: nothing pending any more


def test_flush_is_quiet_when_every_dead_letter_is_delivered():
    dead = DeadLetters(FutureSink(), "t.dlq")
    dead.send(Record("events", 0, 1, b"x"), Rejection("not_json", "x"))
    dead.flush()
    DeadLetters(ListSink(), "t.dlq").flush()  # a sink without futures


def test_a_lost_dead_letter_rolls_back_and_every_event_is_learned_once(tmp_path):
    """The broker refuses one dead letter once (mid-batch, after part of the batch was learned):
    the service goes back to its last good state, reads the batch again, and in the end every
    event is learned exactly once and the dead letter is written."""
    import threading

    from consumers.wire import encode
    from driftline.checkpoint import CheckpointStore
    from driftline.checkpointing import Checkpointer
    from driftline.config import Settings
    from driftline.learning import build_learner
    from driftline.metrics import CollectorRegistry, Metrics
    from driftline.service import Service
    from tests.memory import ListSource

    class RefusesOnce(FutureSink):
        def send(self, topic, value, key=None, headers=None):
            future = super().send(topic, value, key, headers)
            self.fail = set()  # only the first attempt fails
            return future

    values = [encode({"a": float(i)}, i % 2) for i in range(30)]
    values[12] = b"{not json"
    stop = threading.Event()
    sink = RefusesOnce(fail={12})
    dead_letters = DeadLetters(sink, "events.dlq")
    store = CheckpointStore(tmp_path, b"k" * 32)
    service = Service(build_learner(Settings()), dead_letters, Metrics(CollectorRegistry()),
                      checkpointer=Checkpointer(store, dead_letters, interval_seconds=0.0))

    class Source(ListSource):
        def poll(self, timeout_ms=0):
            if self.exhausted():
                stop.set()
            return super().poll(timeout_ms)

    source = Source("events", values, batch=10, on_assign=service.on_assign)
    service.run(source, stop)
    assert service.pipeline.labelled == 29  # every good event once, none twice
    assert service.outcomes == {"learned": 29, "unlabelled": 0, "dead_lettered": 1}
    assert [int(dict(h)["driftline.source.offset"]) for _, _, _, h in sink.sent] == [12, 12]
    latest = store.load_latest()
    assert latest is not None and latest[0].offsets == {0: 30}


class MessageSizeTooLargeError(Exception):
    """Named like kafka-python's refusal of a record too large for the topic."""


class TooLargeSink(ListSink):
    """Refuses, as a broker whose topic takes at most `limit` bytes would, every record whose
    value and headers are larger than that."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit

    def send(self, topic, value, key=None, headers=None):
        super().send(topic, value, key, headers)
        size = record_size(value, headers or [])
        error = MessageSizeTooLargeError(f"{size} bytes") if size > self.limit else None
        return Future(error)


def test_a_dead_letter_refused_for_good_twice_is_resent_without_its_value():
    sink = TooLargeSink(limit=2000)
    dead = DeadLetters(sink, "t.dlq")
    big = Record("events", 0, 41, b"x" * 10_000)
    rejection = Rejection("not_json", "Expecting value: line 1 column 1 (char 0)")
    dead.send(big, rejection)
    with pytest.raises(DeadLettersLost) as first:  # the first refusal: the caller rolls back
        dead.flush()
    assert first.value.offset == 41 and "MessageSizeTooLarge" in first.value.reason
    dead.clear_failures()
    dead.send(big, rejection)  # read again after the roll back: refused again
    dead.flush()  # resent at once without its value: delivered, no failure
    assert dead.minimal_sent == 1
    assert [len(value) for _, value, _, _ in sink.sent] == [10_000, 10_000, 0]
    headers = dict(sink.sent[-1][3])
    assert headers["driftline.reason"] == b"not_json"
    assert headers["driftline.source.offset"] == b"41"
    assert headers["driftline.value.bytes"] == b"10000"
    assert b"refused" in headers["driftline.value.omitted"]
    assert b"MessageSizeTooLarge" in headers["driftline.value.omitted"]
    assert record_size(b"", sink.sent[-1][3]) < 2000
    dead.send(Record("events", 0, 42, b"{}"), rejection)  # later ones are sent as they are
    dead.flush()
    assert sink.sent[-1][1] == b"{}"


def test_a_refusal_that_may_pass_later_is_never_resent_without_its_value():
    dead = DeadLetters(FutureSink(fail={5}), "t.dlq")  # RuntimeError: not a refusal for good
    for _ in range(3):
        dead.send(Record("events", 0, 5, b"x"), Rejection("not_json", "x"))
        with pytest.raises(DeadLettersLost):
            dead.flush()
        dead.clear_failures()
    assert dead.minimal_sent == 0 and all(value == b"x" for _, value, _, _ in dead.sink.sent)


def test_a_minimal_dead_letter_the_broker_refuses_too_is_reported_again():
    dead = DeadLetters(TooLargeSink(limit=50), "t.dlq")  # not even the headers fit
    record = Record("events", 0, 7, b"x" * 100)
    for attempt in range(3):
        dead.send(record, Rejection("not_json", "x"))
        with pytest.raises(DeadLettersLost) as info:
            dead.flush()
        assert info.value.offset == 7
        if attempt:
            assert "minimal dead letter" in info.value.reason
        dead.clear_failures()
    assert dead.minimal_sent == 0


def test_a_flush_gives_up_when_cancelled_and_the_dead_letter_counts_as_lost():
    """SIGTERM while the broker is away: the wait ends once `cancel()` says so, not when the
    producer's delivery timeout (120 s) expires."""
    import time

    dead = DeadLetters(FutureSink(hang={3}), "t.dlq")
    dead.send(Record("events", 0, 3, b"x"), Rejection("not_json", "x"))
    asked = []
    started = time.monotonic()
    with pytest.raises(DeadLettersLost) as info:
        dead.flush(cancel=lambda: asked.append(1) or len(asked) >= 3)
    assert time.monotonic() - started < 5 and len(asked) == 3
    assert "in time" in info.value.reason
    dead.clear_failures()
    dead.flush()  # nothing sent since: returns at once, whatever the sink still holds
