"""What the benchmarks that run `driftline serve` share: one model to compare against River, and
a free port for its metrics."""

from __future__ import annotations

import socket

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
