"""What the benchmarks share: a broker, Elec2 without end, `driftline serve` in a process of its
own (a free port for its metrics, its consumed events), and one model to compare against River."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from consumers.kafka_io import broker_ready
from driftline import broker
from driftline.datasets import bundled

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


def consumed(port: int) -> float:
    """Events the service on `port` has consumed (its `driftline_events_total`); 0 while its
    metrics do not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("driftline_events_total{"))


def a_broker(address: str | None) -> str:
    """The broker at `address` (127.0.0.1:9092 if None), started on that port with `driftline
    kafka up` if none answers there."""
    address = address or "127.0.0.1:9092"
    if broker_ready(address):
        return address
    return broker.up(int(address.rpartition(":")[2]))


def elec_forever() -> Iterator[tuple[dict[str, Any], Any]]:
    """Elec2's rows, over and over."""
    return itertools.chain.from_iterable(itertools.repeat(list(bundled("elec"))))


def fill_elec(bootstrap: str, topic: str, n: int) -> None:
    """Create `topic` (one partition) and publish `n` Elec2 events to it (repeated as needed)."""
    from kafka import KafkaProducer

    from consumers.kafka_io import create_topic
    from consumers.wire import encode

    create_topic(bootstrap, topic, 1)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, batch_size=512 * 1024)
    for x, y in itertools.islice(elec_forever(), n):
        producer.send(topic, encode(x, y))
    producer.flush()
    producer.close()


SERVE_CONFIG = """
[kafka]
bootstrap_servers = "{bootstrap}"
topic = "{topic}"
group_id = "{group}"
{kafka}
[metrics]
port = {port}

[checkpoint]
dir = "{state}"
"""


class Serve:
    """`driftline serve` on `topic` in a process of its own, with a fresh group and state: the
    default configuration, plus `kafka` lines in its [kafka] table and `tables` after it.
    `checkout`: run the driftline of that directory (another release) instead of this one."""

    def __init__(self, bootstrap: str, topic: str, *, kafka: str = "", tables: str = "",
                 checkout: Path | None = None, prefix: str = "driftline-serve-") -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=prefix))
        self.port = free_port()
        config = self.folder / "driftline.toml"
        config.write_text(SERVE_CONFIG.format(
            bootstrap=bootstrap, topic=topic, group=f"{self.folder.name}-g", kafka=kafka,
            port=self.port, state=self.folder / "state") + tables)
        env = {**os.environ, "DRIFTLINE_CHECKPOINT_KEY": "benchmark-key"}
        if checkout is not None:
            env["PYTHONPATH"] = str(checkout)
        with open(self.folder / "serve.log", "wb") as log:  # the child keeps its own handle
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "driftline", "serve", "--config", str(config)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=checkout)

    def consumed(self) -> float:
        return consumed(self.port)

    def ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"not ready; log in {self.folder}")

    def stop(self) -> None:
        stop(self.proc)


def stop(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM, and SIGKILL if it has not exited within `timeout` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
