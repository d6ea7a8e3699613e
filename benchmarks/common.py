"""What the benchmarks that run `driftline serve` share: one model to compare against River, a
free port for its metrics, and the number of events it has consumed."""

from __future__ import annotations

import socket
import urllib.request

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
