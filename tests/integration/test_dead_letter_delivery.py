"""Dead letters through a real broker: the largest possible one is accepted by a default topic,
and one the broker refuses raises `DeadLettersLost` naming its source, instead of being lost."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from consumers.deadletter import DeadLetters, DeadLettersLost
from consumers.kafka_io import KafkaSink
from consumers.records import Record
from consumers.wire import Decoder, Rejection, encode
from tests.integration.support import (
    ONE_MODEL,
    Service,
    free_port,
    read_topic,
    sample,
    wait_for,
    write_config,
)

HUGE_NAME_EVENT = b'{"x": {"' + b"n" * 600_000 + b'": null}}'


def headers_of(record):
    return {key: value for key, value in record.headers}


def test_the_largest_dead_letters_are_accepted_by_a_default_topic(kafka_bootstrap, new_topic):
    dlq = new_topic()
    sink = KafkaSink(kafka_bootstrap)
    dead = DeadLetters(sink, dlq, max_bytes=100_000_000)
    rejection = Decoder().decode(HUGE_NAME_EVENT)
    assert isinstance(rejection, Rejection)
    dead.send(Record("events", 0, 1, HUGE_NAME_EVENT), rejection)
    worst = b"v" * 5_000_000  # as large as a wide max_message_bytes lets in
    dead.send(Record("events", 0, 2, worst), Rejection("model_error", "x" * 3_000_000))
    try:
        dead.flush()  # raises DeadLettersLost if the broker refused either
    finally:
        sink.close()
    records = read_topic(kafka_bootstrap, dlq, expected=2)
    by_offset = {int(headers_of(r)["driftline.source.offset"]): r for r in records}
    assert by_offset[1].value == HUGE_NAME_EVENT
    assert headers_of(by_offset[1])["driftline.reason"] == b"too_long"
    assert worst.startswith(by_offset[2].value)
    assert headers_of(by_offset[2])["driftline.value.bytes"] == b"5000000"


def test_a_refused_dead_letter_raises_delivery_failed_naming_its_source(
    kafka_bootstrap, new_topic
):
    dlq = f"test-refusing-dlq-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:  # this topic refuses any record batch above 2,000 bytes
        admin.create_topics([NewTopic(dlq, num_partitions=1, replication_factor=1,
                                      topic_configs={"max.message.bytes": "2000"})])
    finally:
        admin.close()
    sink = KafkaSink(kafka_bootstrap, linger_ms=0)
    dead = DeadLetters(sink, dlq)
    try:
        dead.send(Record("events", 2, 40, b"small"), Rejection("not_json", "x"))
        dead.flush()  # delivered
        dead.send(Record("events", 2, 41, b"x" * 10_000), Rejection("not_json", "x"))
        with pytest.raises(DeadLettersLost) as info:
            dead.flush()
    finally:
        sink.close()
    failed = info.value
    assert (failed.topic, failed.partition, failed.offset) == ("events", 2, 41)
    assert "MessageSizeTooLarge" in failed.reason or "RecordTooLarge" in failed.reason, failed
    assert "events[2]@41" in str(failed)


def test_the_service_dead_letters_a_600_kB_event_and_carries_on(
    kafka_bootstrap, new_topic, tmp_path
):
    topic = new_topic()
    sink = KafkaSink(kafka_bootstrap)
    sink.send(topic, HUGE_NAME_EVENT)
    for i in range(20):
        sink.send(topic, encode({"a": float(i)}, i % 2))
    sink.flush()
    sink.close()
    port = free_port()
    config = write_config(tmp_path / "driftline.toml", kafka_bootstrap, topic, port,
                          extra=ONE_MODEL)
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: sample(port, "driftline_samples_learned", model="lr") == 20,
                 timeout=60, what="20 learned")
        assert sample(port, "driftline_dead_letters_total", reason="too_long") == 1
        assert service.stop() == 0
    [dead] = read_topic(kafka_bootstrap, f"{topic}.dlq", expected=1)
    assert dead.value == HUGE_NAME_EVENT
    assert headers_of(dead)["driftline.source.offset"] == b"0"
    log = service.output()
    assert max(len(line) for line in log.splitlines()) < 1000  # no 600 kB log line
