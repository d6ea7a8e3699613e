"""Exactly-once learning through crashes, restarts, shutdowns, bad checkpoints and a broker
outage: every event learned once, the accuracy equal to an uninterrupted River run's."""

from __future__ import annotations

import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from river import evaluate, metrics

from driftline.checkpoint import CheckpointStore, load_key
from driftline.datasets import bundled
from tests.integration.support import (
    ONE_MODEL,
    Service,
    broker_port,
    free_port,
    river_logistic_regression,
    sample,
    wait_for,
    write_config,
)


def river_accuracy(n: int) -> float:
    return evaluate.progressive_val_score(
        bundled("elec", limit=n),
        river_logistic_regression(),
        metrics.Accuracy(),
    ).get()


def setup(tmp_path: Path, bootstrap: str, topic: str, interval: float = 0.5) -> tuple[Path, int]:
    port = free_port()
    checkpoint = f'[checkpoint]\ndir = "{tmp_path / "state"}"\ninterval_seconds = {interval}\n'
    config = tmp_path / "driftline.toml"
    write_config(config, bootstrap, topic, port, models=ONE_MODEL)
    # write_config sets [checkpoint] dir; replace that table with ours.
    text = config.read_text().replace(f'[checkpoint]\ndir = "{tmp_path / "state"}"\n', checkpoint)
    config.write_text(text)
    return config, port


def consuming(port: int) -> bool:
    """/readyz answers 200: partitions assigned and polls succeeding."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:  # not up yet, or 503
        return False


def learned(port: int) -> float | None:
    return sample(port, "driftline_samples_learned", model="lr")


def publish(bootstrap: str, topic: str, limit: int, start: int = 0,
            rate: int | None = None) -> subprocess.Popen:
    """Publish Elec2 rows [start, start + limit) in the background."""
    args = [sys.executable, "-m", "driftline", "publish", "--bootstrap-servers", bootstrap,
            "--topic", topic, "--csv", str(elec_csv(start, limit)), "--target", "class"]
    if rate:
        args += ["--rate", str(rate)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_CSV_CACHE: dict[tuple[int, int], Path] = {}


def elec_csv(start: int, limit: int) -> Path:
    """A slice of Elec2 as its own CSV, so that publishes can continue where others ended."""
    import csv
    import tempfile

    key = (start, limit)
    if key not in _CSV_CACHE:
        rows = list(bundled("elec", limit=start + limit))[start:]
        path = Path(tempfile.mkdtemp()) / f"elec-{start}-{limit}.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            names = list(rows[0][0])
            writer.writerow([*names, "class"])
            for x, y in rows:
                writer.writerow([repr(x[n]) for n in names] + [y])
        _CSV_CACHE[key] = path
    return _CSV_CACHE[key]


def kill_while_learning(config: Path, log: Path, port: int, publisher: subprocess.Popen,
                        rng: random.Random, times: int) -> None:
    """Start the service `times` times and SIGKILL it at a random moment while it learns: once
    it consumes and has learned something since it started (or nothing is left to learn)."""
    for _ in range(times):
        with Service(config, log) as service:
            wait_for(lambda: consuming(port), timeout=60, what="the service consuming")
            start = learned(port) or 0
            wait_for(
                lambda start=start: (learned(port) or 0) > start or publisher.poll() is not None,
                timeout=60, what="the service learning",
            )
            time.sleep(rng.uniform(0.0, 1.5))
            assert service.proc is not None
            service.proc.send_signal(signal.SIGKILL)
            service.proc.wait(10)


def test_sigkill_ten_times_learns_every_event_exactly_once(kafka_bootstrap, new_topic, tmp_path):
    n = 20_000
    topic = new_topic()
    config, port = setup(tmp_path, kafka_bootstrap, topic)
    publisher = publish(kafka_bootstrap, topic, n, rate=700)
    rng = random.Random(20261127)
    log = tmp_path / "serve.log"
    kill_while_learning(config, log, port, publisher, rng, times=10)
    assert publisher.wait(120) == 0
    with Service(config, log) as service:
        wait_for(lambda: learned(port) == n, timeout=120, what=f"{n} samples learned")
        time.sleep(1.5)  # a replay of anything learned before would push it past n
        assert learned(port) == n
        live = sample(port, "driftline_prequential_accuracy", model="lr")
        assert service.stop() == 0
    assert service.output().count("restored checkpoint") >= 8, service.output()[-3000:]
    assert live is not None and abs(live - river_accuracy(n)) <= 1e-9


def test_restarted_after_sigkill_learns_again_within_15_seconds(kafka_bootstrap, new_topic,
                                                                tmp_path):
    topic = new_topic()
    config, port = setup(tmp_path, kafka_bootstrap, topic)
    assert publish(kafka_bootstrap, topic, 2000).wait(60) == 0
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: learned(port) == 2000, timeout=90, what="2000 learned")
        assert service.proc is not None
        service.proc.send_signal(signal.SIGKILL)
        service.proc.wait(10)
    assert publish(kafka_bootstrap, topic, 1000, start=2000).wait(60) == 0
    started = time.monotonic()
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: (learned(port) or 0) > 2000, timeout=15, what="learning after restart")
        elapsed = time.monotonic() - started
        wait_for(lambda: learned(port) == 3000, timeout=30, what="3000 learned")
        assert service.stop() == 0
    assert elapsed < 15


def test_sigterm_writes_a_final_checkpoint_and_a_restart_learns_nothing_twice(
    kafka_bootstrap, new_topic, tmp_path
):
    topic = new_topic()
    config, port = setup(tmp_path, kafka_bootstrap, topic, interval=60.0)
    assert publish(kafka_bootstrap, topic, 3000).wait(60) == 0
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: learned(port) == 3000, timeout=90, what="3000 learned")
        assert service.stop(timeout=10) == 0

    state_dir = tmp_path / "state"
    loaded = CheckpointStore(state_dir, load_key(state_dir)).load_latest()
    assert loaded is not None
    state, _ = loaded
    assert state.offsets == {0: 3000}
    assert state.pipeline.labelled == 3000

    with Service(config, tmp_path / "serve2.log") as service:
        wait_for(lambda: learned(port) == 3000, timeout=60, what="the restored state")
        time.sleep(2)
        assert learned(port) == 3000  # nothing learned twice
        assert publish(kafka_bootstrap, topic, 500, start=3000).wait(60) == 0
        wait_for(lambda: learned(port) == 3500, timeout=60, what="the new events")
        live = sample(port, "driftline_prequential_accuracy", model="lr")
        assert service.stop() == 0
    assert live is not None and abs(live - river_accuracy(3500)) <= 1e-9


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_checkpoint_falls_back_to_the_one_before(kafka_bootstrap, new_topic, tmp_path,
                                                           damage):
    n = 4000
    topic = new_topic()
    config, port = setup(tmp_path, kafka_bootstrap, topic, interval=0.3)
    publisher = publish(kafka_bootstrap, topic, n, rate=2000)
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: learned(port) == n, timeout=90, what=f"{n} learned")
        assert publisher.wait(30) == 0
        assert service.stop() == 0

    state_dir = tmp_path / "state"
    newest, before = CheckpointStore(state_dir, load_key(state_dir)).files()[:2]
    blob = newest.read_bytes()
    if damage == "truncate":
        newest.write_bytes(blob[: len(blob) // 2])
    else:
        flipped = bytearray(blob)
        flipped[len(blob) // 2] ^= 0xFF
        newest.write_bytes(bytes(flipped))

    with Service(config, tmp_path / "serve2.log") as service:
        wait_for(lambda: learned(port) == n, timeout=90, what="the replay after the fallback")
        time.sleep(1.5)
        assert learned(port) == n
        live = sample(port, "driftline_prequential_accuracy", model="lr")
        assert service.stop() == 0
    assert "signature does not verify" in service.output()
    assert f"restored {before.name}" in service.output()
    assert live is not None and abs(live - river_accuracy(n)) <= 1e-9


class _Evil:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.path, "w"))


def test_a_checkpoint_that_would_run_code_is_refused(
    kafka_bootstrap, new_topic, tmp_path, monkeypatch
):
    """Checkpoints nobody can verify are never unpickled, and never silently replaced by a fresh
    start either (that would lose the state): the service refuses to start until they are moved
    away, and makes no key beside them."""
    from driftline.checkpoint import KEY_ENV, sign

    topic = new_topic()
    config, port = setup(tmp_path, kafka_bootstrap, topic)
    assert publish(kafka_bootstrap, topic, 500).wait(60) == 0
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    marker = tmp_path / "pwned"
    # Unsigned, and signed with the wrong key: both must be refused before unpickling.
    (state_dir / "checkpoint-000000000001.ckpt").write_bytes(pickle.dumps(_Evil(str(marker))))
    (state_dir / "checkpoint-000000000002.ckpt").write_bytes(
        sign(b"not the key", pickle.dumps(_Evil(str(marker))))
    )
    monkeypatch.delenv(KEY_ENV, raising=False)
    with Service(config, tmp_path / "no-key.log") as service:
        assert service.proc is not None and service.proc.wait(60) == 2
    assert "checkpoint.dir" in service.output() and str(state_dir) in service.output()
    assert not (state_dir / "checkpoint.key").exists()  # no new key beside checkpoints

    monkeypatch.setenv(KEY_ENV, "a key, but not theirs")
    with Service(config, tmp_path / "wrong-key.log") as service:
        assert service.proc is not None and service.proc.wait(60) == 2
    assert "none verifies with the key in use" in service.output()
    assert service.output().count("refused without unpickling") == 1  # the signed one
    assert "not a driftline checkpoint" in service.output()
    assert not marker.exists()

    for path in state_dir.glob("*.ckpt"):  # moved away on purpose: a fresh start
        path.rename(tmp_path / path.name)
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: learned(port) == 500, timeout=90, what="500 learned from scratch")
        assert service.stop() == 0
    assert not marker.exists()


@pytest.mark.skipif(not (shutil.which("java") and shutil.which("mvn")),
                    reason="the outage test runs its own local broker (Java 17 and Maven)")
def test_a_broker_outage_of_20_seconds_is_survived(new_topic, tmp_path):
    from driftline import broker

    kafka_port = broker_port()
    bootstrap = broker.up(kafka_port)
    try:
        topic = f"outage-{os.getpid()}"
        config, port = setup(tmp_path, bootstrap, topic)
        assert publish(bootstrap, topic, 3000).wait(60) == 0
        with Service(config, tmp_path / "serve.log") as service:
            wait_for(lambda: learned(port) == 3000, timeout=90, what="3000 learned")
            broker.down(kafka_port)
            time.sleep(20)
            assert service.proc is not None and service.proc.poll() is None
            broker.up(kafka_port)
            assert publish(bootstrap, topic, 3000, start=3000).wait(120) == 0
            wait_for(lambda: learned(port) == 6000, timeout=120, what="6000 learned")
            time.sleep(1.5)
            assert learned(port) == 6000
            live = sample(port, "driftline_prequential_accuracy", model="lr")
            assert service.stop() == 0
    finally:
        broker.down(kafka_port, delete_data=True)
    assert live is not None and abs(live - river_accuracy(6000)) <= 1e-9


def test_events_of_an_aborted_upstream_transaction_are_never_learned(kafka_bootstrap, new_topic,
                                                                    tmp_path):
    """A producer upstream that writes in transactions (Kafka Streams, Flink, Quix Streams with
    exactly-once) aborts some: those events never happened, and a service that learns each
    event once must not learn them at all, whatever its checkpoint store."""
    from consumers.kafka_io import KafkaSink, TransactionalSink
    from consumers.wire import encode

    topic = new_topic()
    events = [encode(x, y) for x, y in bundled("elec", limit=300)]
    upstream = TransactionalSink(kafka_bootstrap, f"{topic}-upstream")
    for value in events[:100]:
        upstream.send(topic, value)
    upstream.flush()
    upstream.abort()
    for value in events[100:200]:
        upstream.send(topic, value)
    upstream.commit(topic, {}, None)
    upstream.close()
    plain = KafkaSink(kafka_bootstrap)
    for value in events[200:300]:
        plain.send(topic, value)
    plain.send(topic, encode({"period": 0.5}))  # unlabelled: the last message
    plain.flush()
    plain.close()

    port = free_port()
    config = write_config(tmp_path / "driftline.toml", kafka_bootstrap, topic, port)
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: sample(port, "driftline_events_total", outcome="unlabelled") == 1,
                 timeout=60, what="the last message processed")
        assert sample(port, "driftline_events_total", outcome="learned") == 200
        assert service.stop() == 0
