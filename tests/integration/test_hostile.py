"""Hostile input and faults through a real broker (issue 11): no message, fault or mistake stalls
the service, loses an event or wipes its state.

- a 600 kB message as the very first of a fresh instance's partition is dead-lettered whole and
  the events after it are learned;
- a dead-letter topic that refuses a dead letter (its max.message.bytes is smaller): the service
  rolls back, retries, and then sends it without its value, learning nothing twice; when even
  that is refused it keeps retrying with backoff, alive, never checkpointing past it;
- a first "y": "pwn" does not make later numeric labels dead letters;
- one 1e308 feature is dead-lettered (out_of_range) and the linear members learn on unharmed;
- SIGTERM while the broker is away exits within 10 s, even with a dead letter in flight.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from river import evaluate, metrics

from consumers.kafka_io import KafkaSink
from consumers.wire import encode
from driftline.checkpoint import CheckpointStore, load_key
from driftline.config import Settings
from driftline.datasets import bundled
from driftline.learning import build_learner
from tests.integration.support import (
    ONE_MODEL,
    Service,
    broker_port,
    free_port,
    read_topic,
    river_logistic_regression,
    sample,
    wait_for,
    write_config,
)

HUGE_NAME_EVENT = b'{"x": {"' + b"n" * 600_000 + b'": null}}'
ELEC = list(bundled("elec", limit=2000))


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    sink = KafkaSink(bootstrap, linger_ms=5)
    for value in values:
        sink.send(topic, value)
    sink.flush()
    sink.close()


def river_accuracy(events) -> float:
    return evaluate.progressive_val_score(
        events, river_logistic_regression(), metrics.Accuracy()
    ).get()


def learned(port: int, model: str = "lr") -> float | None:
    return sample(port, "driftline_samples_learned", model=model)


def headers_of(record) -> dict[str, bytes]:
    return {key: value for key, value in record.headers}


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status
    except OSError:
        return 0


def final_offsets(state_dir: Path) -> dict[int, int]:
    loaded = CheckpointStore(state_dir, load_key(state_dir)).load_latest()
    assert loaded is not None
    return loaded[0].offsets


def test_a_600_kB_first_message_of_a_fresh_partition_is_dead_lettered_and_the_rest_learned(
    kafka_bootstrap, new_topic, tmp_path
):
    topic = new_topic()
    events = ELEC[:300]
    produce(kafka_bootstrap, topic, [HUGE_NAME_EVENT] + [encode(x, y) for x, y in events])
    port = free_port()
    config = write_config(tmp_path / "driftline.toml", kafka_bootstrap, topic, port,
                          extra=ONE_MODEL)
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: learned(port) == 300, timeout=60, what="300 learned")
        assert sample(port, "driftline_dead_letters_total", reason="too_long") == 1
        assert sample(port, "driftline_events_total", outcome="dead_lettered") == 1
        live = sample(port, "driftline_prequential_accuracy", model="lr")
        assert service.stop() == 0
    assert live is not None and abs(live - river_accuracy(events)) <= 1e-9
    [dead] = read_topic(kafka_bootstrap, f"{topic}.dlq", expected=1)
    assert dead.value == HUGE_NAME_EVENT  # whole: it fits a default topic
    assert headers_of(dead)["driftline.reason"] == b"too_long"
    assert headers_of(dead)["driftline.source.offset"] == b"0"
    assert final_offsets(tmp_path / "state") == {0: 301}
    assert max(len(line) for line in service.output().splitlines()) < 1000


def refusing_dead_letter_topic(bootstrap: str, name: str, max_message_bytes: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(
            name, num_partitions=1, replication_factor=1,
            topic_configs={"max.message.bytes": str(max_message_bytes)},
        )])
    finally:
        admin.close()


def start_with_a_refused_dead_letter(bootstrap, topic, tmp_path, dlq_max_bytes):
    """50 events, learned and checkpointed; then a 10 kB message that is not JSON and 50 more
    events. The dead-letter topic refuses records above `dlq_max_bytes`."""
    refusing_dead_letter_topic(bootstrap, f"{topic}.dlq", dlq_max_bytes)
    port = free_port()
    config = write_config(tmp_path / "driftline.toml", bootstrap, topic, port, extra=ONE_MODEL)
    text = config.read_text().replace("[checkpoint]\n", "[checkpoint]\ninterval_seconds = 0.3\n")
    config.write_text(text)
    produce(bootstrap, topic, [encode(x, y) for x, y in ELEC[:50]])
    return config, port


def watch_health(port: int, stop: threading.Event, answers: list[int]) -> threading.Thread:
    def run() -> None:
        while not stop.wait(0.25):
            answers.append(healthz(port))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_dead_letter_the_broker_refuses_is_resent_without_its_value_and_nothing_is_learned_twice(
    kafka_bootstrap, new_topic, tmp_path
):
    topic = new_topic()
    config, port = start_with_a_refused_dead_letter(kafka_bootstrap, topic, tmp_path, 2000)
    answers: list[int] = []
    done = threading.Event()
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: learned(port) == 50, timeout=60, what="50 learned")
        watcher = watch_health(port, done, answers)
        time.sleep(1.5)  # a checkpoint of the 50 (every 0.3 s)
        produce(kafka_bootstrap, topic,
                [b"{" * 10_000] + [encode(x, y) for x, y in ELEC[50:100]])
        wait_for(lambda: learned(port) == 100, timeout=60, what="100 learned")
        time.sleep(1.5)  # anything learned twice would show up now
        assert learned(port) == 100
        assert sample(port, "driftline_dead_letters_total", reason="not_json") == 1
        live = sample(port, "driftline_prequential_accuracy", model="lr")
        done.set()
        watcher.join()
        assert service.stop() == 0
    log = service.output()
    assert "rolling back to the last good state" in log  # the first refusal
    assert "refused again" in log and "resending it without its value" in log
    assert answers and set(answers) == {200}
    assert live is not None and abs(live - river_accuracy(ELEC[:100])) <= 1e-9
    [dead] = read_topic(kafka_bootstrap, f"{topic}.dlq", expected=1)
    headers = headers_of(dead)
    assert dead.value in (b"", None)
    assert headers["driftline.reason"] == b"not_json"
    assert headers["driftline.source.offset"] == b"50"
    assert headers["driftline.value.bytes"] == b"10000"
    assert b"refused" in headers["driftline.value.omitted"]
    assert final_offsets(tmp_path / "state") == {0: 101}


def test_when_even_the_minimal_dead_letter_is_refused_the_service_retries_alive_and_stays_put(
    kafka_bootstrap, new_topic, tmp_path
):
    """No dead letter fits the topic (max.message.bytes 100): nothing may be lost, so the
    partition waits at the message, retrying with backoff; the events before it stay learned
    once, the checkpoint never passes it, /healthz answers 200, SIGTERM exits."""
    topic = new_topic()
    config, port = start_with_a_refused_dead_letter(kafka_bootstrap, topic, tmp_path, 100)
    answers: list[int] = []
    done = threading.Event()
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: learned(port) == 50, timeout=60, what="50 learned")
        time.sleep(1.5)  # a checkpoint of the 50 (every 0.3 s)
        produce(kafka_bootstrap, topic,
                [b"{" * 10_000] + [encode(x, y) for x, y in ELEC[50:100]])
        watcher = watch_health(port, done, answers)
        wait_for(lambda: service.output().count("rolled back to the last good state") >= 3,
                 timeout=30, what="three roll backs")
        assert learned(port) == 50
        done.set()
        watcher.join()
        assert service.stop() == 0
    assert answers and set(answers) == {200}
    log = service.output()
    assert "retrying in 0.5 s" in log and "retrying in 1.0 s" in log  # backoff
    assert final_offsets(tmp_path / "state") == {0: 50}  # never past the message


def test_a_first_label_pwn_does_not_reject_the_numeric_labels_after_it(
    kafka_bootstrap, new_topic, tmp_path
):
    topic = new_topic()
    x0, _ = ELEC[0]
    events = [(x0, "pwn"), *ELEC[1:500]]
    produce(kafka_bootstrap, topic, [encode(x, y) for x, y in events])
    port = free_port()
    config = write_config(tmp_path / "driftline.toml", kafka_bootstrap, topic, port,
                          extra=ONE_MODEL)
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: learned(port) == 500, timeout=60, what="500 learned")
        assert sample(port, "driftline_events_total", outcome="dead_lettered") == 0
        live = sample(port, "driftline_prequential_accuracy", model="lr")
        assert service.stop() == 0
    assert live is not None and abs(live - river_accuracy(events)) <= 1e-9
    assert live > 0.6


def test_one_1e308_feature_is_out_of_range_and_the_linear_members_are_unharmed(
    kafka_bootstrap, new_topic, tmp_path
):
    """With the default models: the members' accuracies equal those of a run over the good
    events alone (a scaler that saw 1e308 would predict NaN from then on)."""
    topic = new_topic()
    x, _ = ELEC[100]
    poison = encode({**x, "nswprice": 1e308}, 1)
    values = [encode(x, y) for x, y in ELEC[:100]] + [poison]
    values += [encode(x, y) for x, y in ELEC[100:1000]]
    produce(kafka_bootstrap, topic, values)
    port = free_port()
    config = write_config(tmp_path / "driftline.toml", kafka_bootstrap, topic, port)
    clean = build_learner(Settings())
    for x, y in ELEC[:1000]:
        clean.step(x, y)
    expected = {name: stats.accuracy for name, stats in clean.stats().items()}
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: learned(port, "logistic_regression") == 1000, timeout=60,
                 what="1000 learned")
        assert sample(port, "driftline_dead_letters_total", reason="out_of_range") == 1
        live = {name: sample(port, "driftline_prequential_accuracy", model=name)
                for name in expected}
        assert service.stop() == 0
    for name in ("logistic_regression", "passive_aggressive"):
        assert live[name] is not None and abs(live[name] - expected[name]) <= 1e-9, live
        assert live[name] > 0.6
    [dead] = read_topic(kafka_bootstrap, f"{topic}.dlq", expected=1)
    assert headers_of(dead)["driftline.reason"] == b"out_of_range"
    assert dead.value == poison


@pytest.mark.skipif(not (shutil.which("java") and shutil.which("mvn")),
                    reason="the outage test runs its own local broker (Java 17 and Maven)")
def test_sigterm_while_the_broker_is_away_exits_within_10_seconds(tmp_path):
    """Dead letters in flight when the broker goes away: the loop's flush used to wait for
    them until the producer gave up (120 s). Now SIGTERM cancels that wait, the final
    checkpoint is attempted, and the service exits 0 within 10 s."""
    from driftline import broker

    kafka_port = broker_port()
    bootstrap = broker.up(kafka_port)
    try:
        topic = f"hostile-outage-{uuid.uuid4().hex[:8]}"
        produce(bootstrap, topic, [b"{not json"] * 5_000)
        port = free_port()
        config = write_config(tmp_path / "driftline.toml", bootstrap, topic, port,
                              extra=ONE_MODEL)
        # One record per poll, each with its dead letter: the consumer holds thousands more
        # in its fetch buffer when the broker goes, so one is in flight at the SIGTERM.
        text = config.read_text().replace('group_id = "', 'max_poll_records = 1\ngroup_id = "')
        config.write_text(text)
        with Service(config, tmp_path / "serve.log") as service:
            wait_for(lambda: (sample(port, "driftline_events_total",
                                     outcome="dead_lettered") or 0) > 20,
                     timeout=60, what="dead letters flowing")
            broker.down(kafka_port)
            time.sleep(2)
            assert service.proc is not None
            sent = time.monotonic()
            service.proc.send_signal(signal.SIGTERM)
            assert service.proc.wait(30) == 0
            elapsed = time.monotonic() - sent
    finally:
        broker.down(kafka_port, delete_data=True)
    log = service.output()
    assert "not acknowledged by the broker in time" in log, log[-3000:]
    assert elapsed < 10, f"exited {elapsed:.1f} s after SIGTERM"
