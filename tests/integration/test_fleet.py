"""A fleet of `driftline serve` processes in partition scope with the Kafka store, through joins,
leaves and SIGKILLs: exactly one committed prediction per event, each partition's predictions
those of one uninterrupted run, each bad message dead-lettered once; and a zombie is fenced."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from consumers.records import Record
from consumers.wire import encode
from driftline.config import load_settings
from driftline.datasets import bundled
from driftline.learning import build_learner
from driftline.predictions import encode_prediction
from tests.integration.support import ONE_MODEL, Service, free_port, wait_for

PARTITIONS = 6
KEY_ENV = {"DRIFTLINE_CHECKPOINT_KEY": "fleet-test-key"}


def fleet_config(tmp_path: Path, bootstrap: str, topic: str, name: str,
                 scope: str = "partition") -> Path:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    config = folder / "driftline.toml"
    config.write_text(
        f'[kafka]\nbootstrap_servers = "{bootstrap}"\ntopic = "{topic}"\n'
        f'group_id = "{topic}-group"\nsession_timeout_ms = 6000\nmax_poll_records = 200\n\n'
        f'[metrics]\nport = {free_port()}\n\n'
        f'[checkpoint]\ndir = "{folder / "state"}"\ninterval_seconds = 0.5\n'
        f'scope = "{scope}"\nstore = "kafka"\n\n{ONE_MODEL}'
    )
    return config


def events(n: int, bad_every: int = 700) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) for `n` Elec2 rows round-robin over the partitions; every
    `bad_every`-th message is not JSON."""
    out = []
    for i, (x, y) in enumerate(bundled("elec", limit=n)):
        value = b"{not json" if i % bad_every == bad_every - 1 else encode(x, y)
        out.append((i % PARTITIONS, f"e{i}".encode(), value))
    return out


def publish(bootstrap: str, topic: str, messages: list[tuple[int, bytes, bytes]],
            seconds: float) -> threading.Thread:
    """Publish `messages` evenly over `seconds`, in the background."""
    from kafka import KafkaProducer

    def run() -> None:
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
        chunk = max(1, len(messages) // max(1, int(seconds * 10)))
        for start in range(0, len(messages), chunk):
            for partition, key, value in messages[start:start + chunk]:
                producer.send(topic, value=value, key=key, partition=partition)
            producer.flush()
            time.sleep(0.1)
        producer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def read_committed(bootstrap: str, topic: str, expected: int, timeout: float) -> list[Any]:
    """Every record of `topic` a read_committed consumer sees, once `expected` are there (or
    the timeout passed), plus any beyond."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             isolation_level="read_committed", enable_auto_commit=False,
                             auto_offset_reset="earliest")
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        quiet_until = None
        while time.monotonic() < deadline:
            got = [r for batch in consumer.poll(timeout_ms=500).values() for r in batch]
            records.extend(got)
            if len(records) >= expected:
                quiet_until = quiet_until or time.monotonic() + 3.0  # and any beyond
                if time.monotonic() > quiet_until:
                    break
        return records
    finally:
        consumer.close()


def reference(config: Path, messages: list[tuple[int, bytes, bytes]]) -> dict[int, list]:
    """Per partition, the (prediction, proba, model) of one uninterrupted in-memory run."""
    from consumers.wire import Decoder, Rejection

    settings = load_settings(config)
    decoder = settings.validation.decoder()
    assert isinstance(decoder, Decoder)
    learners: dict[int, Any] = {}
    out: dict[int, list] = {}
    for partition, _key, value in messages:
        event = decoder.decode(value)
        if isinstance(event, Rejection):
            continue
        learner = learners.setdefault(partition, build_learner(settings))
        prediction = learner.step(event.x, event.y).prediction
        body = json.loads(encode_prediction(Record("t", partition, 0, value), None,
                                            prediction, 0.0))
        out.setdefault(partition, []).append((body["prediction"], body["proba"], body["model"]))
    return out


class Fleet:
    """Instances of `driftline serve` by name, started and stopped at will."""

    def __init__(self, tmp_path: Path, bootstrap: str, topic: str, names: list[str],
                 scope: str = "partition") -> None:
        self.configs = {n: fleet_config(tmp_path, bootstrap, topic, n, scope) for n in names}
        self.logs = {n: self.configs[n].parent / "serve.log" for n in names}
        self.running: dict[str, Service] = {}
        os.environ.update(KEY_ENV)

    def start(self, name: str) -> None:
        service = Service(self.configs[name], self.logs[name])
        service.__enter__()
        self.running[name] = service

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        service = self.running.pop(name)
        assert service.proc is not None
        service.proc.send_signal(sig)
        service.proc.wait(30)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.running[name].stop(30)
            self.running.pop(name)

    def output(self) -> str:
        return "\n".join(f"--- {n}\n{log.read_text()[-4000:]}" for n, log in self.logs.items()
                         if log.exists())


def check(bootstrap: str, topic: str, config: Path,
          messages: list[tuple[int, bytes, bytes]], timeout: float = 120) -> None:
    good = [(p, k, v) for p, k, v in messages if not v.startswith(b"{not")]
    bad = [(p, k, v) for p, k, v in messages if v.startswith(b"{not")]
    records = read_committed(bootstrap, f"{topic}.predictions", len(good), timeout)
    seen = Counter((json.loads(r.value)["partition"], json.loads(r.value)["offset"])
                   for r in records)
    assert len(records) == len(good), (len(records), len(good))
    assert max(seen.values()) == 1
    by_partition: dict[int, list] = {}
    for r in sorted(records, key=lambda r: (json.loads(r.value)["partition"],
                                            json.loads(r.value)["offset"])):
        body = json.loads(r.value)
        by_partition.setdefault(body["partition"], []).append(
            (body["prediction"], body["proba"], body["model"]))
        assert r.key is not None and r.key.startswith(b"e")
    expected = reference(config, messages)
    for partition in range(PARTITIONS):
        assert by_partition[partition] == expected[partition], partition
    dead = read_committed(bootstrap, f"{topic}.dlq", len(bad), 30)
    sources = Counter((dict(r.headers)["driftline.source.partition"],
                       dict(r.headers)["driftline.source.offset"]) for r in dead)
    assert len(dead) == len(bad) and max(sources.values()) == 1


def test_a_fleet_through_joins_leaves_and_kills_predicts_each_event_exactly_once(
        kafka_bootstrap: str, new_topic, tmp_path: Path) -> None:
    topic = new_topic(partitions=PARTITIONS)
    messages = events(9000)
    fleet = Fleet(tmp_path, kafka_bootstrap, topic, ["a", "b", "c"])
    rng = random.Random(7)
    try:
        fleet.start("a")
        publisher = publish(kafka_bootstrap, topic, messages, seconds=60)
        kills = 0
        while kills < 12:
            time.sleep(rng.uniform(2.0, 5.0))
            name = rng.choice(["a", "b", "c"])
            if name not in fleet.running:
                fleet.start(name)
            elif len(fleet.running) > 1 or rng.random() < 0.5:
                if rng.random() < 0.8:
                    fleet.kill(name)
                    kills += 1
                else:
                    fleet.kill(name, signal.SIGTERM)  # leaves the group cleanly
        publisher.join(120)
        for name in ["a", "b", "c"]:
            if name not in fleet.running:
                fleet.start(name)
        check(kafka_bootstrap, topic, fleet.configs["a"], messages)
    except BaseException:
        print(fleet.output())
        raise
    finally:
        fleet.stop_all()


def learned(config: Path) -> float:
    from driftline.config import load_settings as load
    from tests.integration.support import scrape

    port = load(config).metrics.port
    try:
        samples = scrape(port)
    except OSError:
        return -1.0
    return sum(v for (name, labels), v in samples.items()
               if name == "driftline_samples_learned" and ("model", "lr") in labels)


def test_a_zombie_past_its_session_timeout_is_fenced_and_its_transaction_never_seen(
        kafka_bootstrap: str, new_topic, tmp_path: Path) -> None:
    topic = new_topic(partitions=PARTITIONS)
    messages = events(4000)
    fleet = Fleet(tmp_path, kafka_bootstrap, topic, ["a", "b"])
    try:
        fleet.start("a")
        publisher = publish(kafka_bootstrap, topic, messages, seconds=30)
        wait_for(lambda: learned(fleet.configs["a"]) > 100, 60, "a learning")
        fleet.start("b")
        wait_for(lambda: learned(fleet.configs["b"]) > 100, 60, "b learning")
        zombie = fleet.running["a"].proc
        assert zombie is not None
        zombie.send_signal(signal.SIGSTOP)  # mid-transaction: events keep coming
        time.sleep(15)  # past the 6 s session timeout: b takes every partition
        zombie.send_signal(signal.SIGCONT)
        publisher.join(60)
        check(kafka_bootstrap, topic, fleet.configs["a"], messages)
        log = fleet.logs["a"].read_text()
        assert "lost (evicted from the group)" in log or "rolling back" in log
    except BaseException:
        print(fleet.output())
        raise
    finally:
        fleet.stop_all()


def test_global_scope_one_instance_learns_and_the_standby_takes_over_its_state(
        kafka_bootstrap: str, new_topic, tmp_path: Path) -> None:
    topic = new_topic(partitions=4)
    messages = [(p % 4, k, v) for p, k, v in events(3000, bad_every=10**9)]
    fleet = Fleet(tmp_path, kafka_bootstrap, topic, ["a", "b"], scope="global")
    try:
        fleet.start("a")
        wait_for(lambda: learned(fleet.configs["a"]) >= 0, 60, "a up")
        fleet.start("b")
        wait_for(lambda: learned(fleet.configs["b"]) >= 0, 60, "b up")
        publisher = publish(kafka_bootstrap, topic, messages, seconds=20)
        wait_for(lambda: max(learned(fleet.configs[n]) for n in "ab") > 500, 60, "learning")
        a, b = learned(fleet.configs["a"]), learned(fleet.configs["b"])
        assert min(a, b) == 0 and max(a, b) > 0  # exactly one learns
        owner, standby = ("a", "b") if a > b else ("b", "a")
        fleet.kill(owner)
        publisher.join(60)
        wait_for(lambda: learned(fleet.configs[standby]) == len(messages), 90,
                 f"the standby to have learned all {len(messages)} events")
        records = read_committed(kafka_bootstrap, f"{topic}.predictions", len(messages), 60)
        seen = Counter((json.loads(r.value)["partition"], json.loads(r.value)["offset"])
                       for r in records)
        assert len(records) == len(messages) and max(seen.values()) == 1
        time.sleep(2)
        assert learned(fleet.configs[standby]) == len(messages)  # nothing learned twice
    except BaseException:
        print(fleet.output())
        raise
    finally:
        fleet.stop_all()
