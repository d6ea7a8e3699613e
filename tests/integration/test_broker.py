"""The broker the integration tests run on: driftline's local broker, and a message round trip."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from consumers import kafka_io
from consumers.kafka_io import KafkaSink, KafkaSource
from consumers.records import Record
from driftline import broker


def test_local_broker_up_is_idempotent(kafka_service) -> None:
    if kafka_service.kind != "local" or kafka_service.port is None:
        pytest.skip(f"the session's broker is not driftline's local one ({kafka_service.kind})")
    messages: list[str] = []
    started = time.monotonic()
    bootstrap = broker.up(kafka_service.port, echo=messages.append)
    elapsed = time.monotonic() - started

    assert bootstrap == kafka_service.bootstrap
    assert elapsed < 10, f"a second up() took {elapsed:.1f} s"
    assert any("already running" in m for m in messages), messages
    assert broker.status(kafka_service.port).startswith("running")


def _send(bootstrap: str, topic: str, value: bytes) -> None:
    sink = KafkaSink(bootstrap)
    try:
        sink.send(topic, value, key=b"k1", headers=[("source", b"test")])
        sink.flush(timeout=10)
    finally:
        sink.close()


def _poll_until_any(source: KafkaSource, seconds: float = 30.0) -> list[Record]:
    # Group join and the first fetch take a few seconds; bounded so a dead broker fails fast.
    deadline = time.monotonic() + seconds
    received: list[Record] = []
    while not received and time.monotonic() < deadline:
        received = source.poll(timeout_ms=500)
    return received


def test_round_trip_through_sink_and_source(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    group = f"{topic}-group"
    _send(kafka_bootstrap, topic, b'{"x": 1.5}')

    source = KafkaSource(kafka_bootstrap, topic, group, auto_offset_reset="earliest")
    try:
        received = _poll_until_any(source)
        assert received, f"no record arrived on {topic} within 30 s"
        assert [(r.topic, r.partition, r.offset, r.value) for r in received] == [
            (topic, 0, 0, b'{"x": 1.5}')
        ]
        source.commit({0: 1}, wait=True)
    finally:
        source.close()

    # The commit holds: the same group resumes after the first record.
    _send(kafka_bootstrap, topic, b'{"x": 2.5}')
    source = KafkaSource(kafka_bootstrap, topic, group, auto_offset_reset="earliest")
    try:
        received = _poll_until_any(source)
        assert [(r.offset, r.value) for r in received] == [(1, b'{"x": 2.5}')]
    finally:
        source.close()


def test_a_warmed_sink_knows_its_topics_before_the_first_send(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic, other = new_topic(partitions=3), new_topic()
    sink = KafkaSink(kafka_bootstrap)
    try:
        metadata = sink._producer._metadata  # what the first send would otherwise wait for
        assert metadata.partitions_for_topic(topic) is None
        sink.warm([topic])
        assert metadata.partitions_for_topic(topic) == {0, 1, 2}
        assert metadata.partitions_for_topic(other) is None
    finally:
        sink.close(timeout=5)


@pytest.mark.parametrize("mode", ["one_owner", "labels", "default"])
def test_a_source_on_a_topic_created_just_before_is_assigned_with_short_polls(
        kafka_bootstrap: str, new_topic: Callable[..., str], mode: str) -> None:
    """A group formed just after its topic was created first sees the topic without partitions;
    the client rejoins once they appear, and kafka-python 3.0 dropped that join when polls were
    shorter than it, leaving the source unassigned until the next rebalance. Joined anew, the
    source is assigned within seconds."""
    topic = new_topic()
    labels = None
    if mode == "labels":
        labels = f"{topic}.labels"
        kafka_io.create_topic(kafka_bootstrap, labels)
    assigned: list[list[int]] = []
    source = KafkaSource(kafka_bootstrap, topic, f"{topic}-group", one_owner=mode == "one_owner",
                         labels_topic=labels,
                         on_assign=lambda _source, partitions: assigned.append(partitions))
    try:
        started = time.monotonic()
        while not assigned and time.monotonic() - started < 15:
            source.poll(timeout_ms=10)  # shorter than a join: the dropped join's condition
        assert assigned, f"not assigned {time.monotonic() - started:.1f} s after subscribing"
        assert 0 in source.assignment()
    finally:
        source.close()


def test_a_poll_is_sized_to_the_callers_pace(
        kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    """On a backlog, a caller that works fast gets large polls (the client's next fetch then
    arrives while it works) and a slow one gets small ones: a batch is about half a second of
    the caller's work, within [500, max_poll_records]."""
    topic = new_topic()
    sink = KafkaSink(kafka_bootstrap, linger_ms=20)
    try:
        for i in range(30_000):
            sink.send(topic, b'{"x": {"a": %d}}' % i)
        sink.flush(timeout=30)
    finally:
        sink.close()
    source = KafkaSource(kafka_bootstrap, topic, f"{topic}-group", max_poll_records=8_000)
    try:
        first = _poll_until_any(source)
        assert 0 < len(first) <= kafka_io.MIN_POLL_RECORDS  # no pace known yet
        sizes = [len(source.poll(timeout_ms=2_000)) for _ in range(3)]  # handed on at once
        assert max(sizes) > kafka_io.MIN_POLL_RECORDS, sizes
        assert max(sizes) <= 8_000, sizes
        time.sleep(2.0)  # a caller that took 2 s over its last batch of at most 8,000
        assert 0 < len(source.poll(timeout_ms=2_000)) <= max(
            kafka_io.MIN_POLL_RECORDS, int(sizes[-1] / 2.0 * kafka_io.BATCH_SECONDS) + 1)
    finally:
        source.close()
