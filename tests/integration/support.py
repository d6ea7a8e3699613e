"""Helpers for tests that run the real `driftline` command against a real broker."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

# One `logistic_regression` member named "lr", no drift detection: the configuration whose
# accuracy must equal River's progressive_val_score.
ONE_MODEL = """
[[models]]
name = "lr"
model = "logistic_regression"

[drift]
detector = "none"
response = "none"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the broker's JVM binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def broker_port() -> int:
    """A port for a broker of a test's own: it and the next (the controller's) free, and below
    the ephemeral range. A port of `free_port` is in that range, where any outgoing connection
    may take the next one as its local port before the broker binds it (seen in CI)."""
    import random

    low = 32768
    with contextlib.suppress(OSError, ValueError, IndexError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(10_000, max(10_002, low - 1))
        if _bindable(port) and _bindable(port + 1):
            return port
    raise RuntimeError("no free pair of ports below the ephemeral range")


def driftline(*args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
    """Run `driftline ARGS...` to completion (as a user would, through the console module)."""
    return subprocess.run(
        [sys.executable, "-m", "driftline", *args],
        capture_output=True, text=True, timeout=timeout, check=check,
    )


def write_config(path: Path, bootstrap: str, topic: str, port: int, kafka: str = "",
                 **sections: str) -> Path:
    """A config file for one test: its own topic, group and metrics port; `kafka`: more lines
    of [kafka]; extra TOML appended."""
    text = (
        f'[kafka]\nbootstrap_servers = "{bootstrap}"\ntopic = "{topic}"\n'
        f'group_id = "{topic}-group"\n{kafka}\n[metrics]\nport = {port}\n\n'
        f'[checkpoint]\ndir = "{path.parent / "state"}"\n\n'
    )
    text += "\n".join(sections.values())
    path.write_text(text)
    return path


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on /metrics, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def sample(port: int, name: str, **labels: str) -> float | None:
    try:
        return scrape(port).get((name, tuple(sorted(labels.items()))))
    except OSError:
        return None


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Service:
    """`driftline serve --config FILE` in a child process, stopped with SIGTERM on exit."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Service:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "driftline", "serve", "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        return self

    def stop(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def committed_offsets(bootstrap: str, group_id: str, topic: str) -> dict[int, int]:
    """The group's committed next offset per partition of `topic`."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group_id).get(group_id, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list[Any]:
    """Every record of `topic` from the start (kafka-python ConsumerRecords, with headers)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None)
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        extra_deadline = time.monotonic() + 1.0  # anything beyond `expected` shows up too
        while time.monotonic() < extra_deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def river_logistic_regression():
    """The `logistic_regression` preset written with River's pipeline and River's own
    LogisticRegression (`OneVsRest` is it on a binary stream), behind driftline's `TypedScaler`:
    that is River's StandardScaler to the last bit, except that it takes a value more than ten
    deviations out as ten deviations, which Elec2 has from about its 17,400th event
    (tests/unit/test_pipeline.py holds both)."""
    from river import linear_model

    from pipeline.onevsrest import OneVsRest
    from pipeline.preprocessing import TypedScaler

    return TypedScaler() | OneVsRest(linear_model.LogisticRegression())
