"""Where the time of the live path goes: `driftline serve` under cProfile through a real broker.

N Elec2 events (1% of them malformed, for the dead-letter path) are published to a fresh topic;
`driftline serve` runs in this process with every feature on (one `logistic_regression` model,
ADWIN with the reweight response, file checkpoints every 5 s, dead letters, the predictions
topic) until it has consumed them, under cProfile. The exclusive time of every function is
added up by stage and printed as shares of the whole. (A profiler inflates pure-Python code
more than C, so read the shares as where to look, not as exact costs; built-ins such as
`dict.get` are counted apart, not with their caller.)

    python benchmarks/profile_live.py [--events 50000] [--bootstrap HOST:PORT] [--no-predictions]
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import os
import pstats
import re
import signal
import tempfile
import threading
import time
import uuid
from collections import defaultdict

from common import a_broker, consumed, free_port

from consumers.kafka_io import KafkaSink, create_topic
from consumers.wire import encode
from driftline.app import serve
from driftline.config import (
    CheckpointSettings,
    DriftSettings,
    KafkaSettings,
    MetricsSettings,
    ModelSpec,
    Settings,
)
from driftline.datasets import bundled

# (stage, pattern of the profiled function's file); the first that matches wins
STAGES = [
    ("client: fetch and parse records",
     r"/kafka/(consumer|record|protocol|client|conn|cluster|future|metrics)"),
    ("client: produce (dead letters, predictions)", r"/kafka/producer"),
    ("decode and validation", r"consumers/wire\.py|/json/"),
    ("learning core (driftline)", r"pipeline/"),
    ("learning core (River)", r"/river/"),
    ("metrics and snapshot", r"driftline/(metrics|snapshot)\.py|prometheus_client"),
    ("checkpoints", r"driftline/(checkpoint|checkpointing|state_store)\.py|pickle|hmac|hashlib"),
    ("dead letters and predictions", r"consumers/deadletter\.py|driftline/predictions\.py"),
    ("service loop", r"driftline/service\.py"),
]


def fill(bootstrap: str, topic: str, n: int) -> None:
    create_topic(bootstrap, topic, 1)
    sink = KafkaSink(bootstrap, linger_ms=20, batch_size=256 * 1024)
    rows = itertools.chain.from_iterable(itertools.repeat(list(bundled("elec"))))
    for i, (x, y) in enumerate(itertools.islice(rows, n)):
        sink.send(topic, b'{"x": "not a mapping"}' if i % 100 == 99 else encode(x, y))
    sink.flush()
    sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--no-predictions", action="store_true",
                        help="turn the predictions topic off")
    args = parser.parse_args()
    bootstrap = a_broker(args.bootstrap)
    topic = f"bench-profile-{uuid.uuid4().hex[:8]}"
    fill(bootstrap, topic, args.events)
    port = free_port()
    state = tempfile.mkdtemp(prefix="driftline-profile-")
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap, topic=topic, group_id=topic,
                            predictions_topic="" if args.no_predictions else None),
        models=(ModelSpec("lr", "logistic_regression"),),
        drift=DriftSettings(detector="adwin", response="reweight"),
        metrics=MetricsSettings(port=port),
        checkpoint=CheckpointSettings(dir=state, interval_seconds=5.0),
    )

    def watch() -> None:  # SIGTERM once every event is consumed: serve ends as on a deploy
        while True:
            time.sleep(0.2)
            if consumed(port) >= args.events:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, daemon=True).start()
    profile = cProfile.Profile()
    profile.runcall(serve, settings)
    stats = pstats.Stats(profile)
    by_stage: dict[str, float] = defaultdict(float)
    total = 0.0
    for (filename, _, function), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        total += tottime
        if filename == "~":  # a built-in: waiting, or work of whoever called it
            stage = ("waiting (network, locks, sleep)" if re.search(
                r"select|poll|sleep|acquire|wait|recv|send", function) else "built-ins")
        else:
            stage = next((name for name, pattern in STAGES if re.search(pattern, filename)),
                         "other")
        by_stage[stage] += tottime
    print(f"{args.events:,} events on {topic} (1% malformed), one logistic_regression, ADWIN, "
          f"checkpoints every 5 s, predictions {'off' if args.no_predictions else 'on'}")
    print(f"profiled run: {total:.1f} s of exclusive time in the serving thread")
    print("| stage | share |")
    print("| --- | ---: |")
    for name, seconds in sorted(by_stage.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {seconds / total:.1%} |")
    print("command: python benchmarks/profile_live.py --events "
          f"{args.events}" + (" --no-predictions" if args.no_predictions else ""))


if __name__ == "__main__":
    main()
