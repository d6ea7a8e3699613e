"""Fleet throughput: events/s of 1, 2 and 3 `driftline serve` instances on one topic (partition
scope, Kafka store), and the Kafka store against the file store for one instance.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39092 .venv/bin/python benchmarks/fleet.py

Each run starts the instances on a fresh, empty `--partitions`-partition topic (a fresh consumer
group, one `logistic_regression` model, checkpoints every second), waits until every instance
owns partitions (so no rebalance falls inside the measurement), then publishes `--events` Elec2
events round-robin over the partitions and times from the first consumed event to the moment the
group's committed offsets cover every event. Every instance is its own process; on a machine
with fewer cores than instances they share the cores, which the figures show.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from common import ONE_MODEL, consumed, free_port, stop
from kafka import KafkaAdminClient, KafkaProducer

from consumers.kafka_io import create_topic
from consumers.wire import encode
from driftline.datasets import bundled

CONFIG = """
[kafka]
bootstrap_servers = "{bootstrap}"
topic = "{topic}"
group_id = "{group}"
session_timeout_ms = 10000

[metrics]
port = {port}

[checkpoint]
dir = "{state}"
interval_seconds = 1.0
scope = "partition"
store = "{store}"
""" + ONE_MODEL



def publish(bootstrap: str, topic: str, events: int, partitions: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    for i, (x, y) in enumerate(bundled("elec", limit=events)):
        producer.send(topic, value=encode(x, y), key=f"e{i}".encode(), partition=i % partitions)
    producer.flush()
    producer.close()


def committed(bootstrap: str, group: str, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic)


def ready(port: int) -> bool:
    """Whether the instance owns partitions and polls (its /readyz)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def run(bootstrap: str, instances: int, store: str, events: int, partitions: int) -> float:
    """Events per second of `instances` processes over a fresh topic of `events` events."""
    name = f"bench-fleet-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, name, partitions)
    folder = Path(tempfile.mkdtemp(prefix="driftline-fleet-"))
    env = {**os.environ, "DRIFTLINE_CHECKPOINT_KEY": "benchmark-key"}
    procs, ports = [], []
    try:
        for i in range(instances):
            port = free_port()
            config = folder / f"instance-{i}.toml"
            config.write_text(CONFIG.format(bootstrap=bootstrap, topic=name, group=f"{name}-g",
                                            port=port, state=folder / f"state-{i}", store=store))
            log = open(folder / f"instance-{i}.log", "wb")  # noqa: SIM115 - the child keeps it
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "driftline", "serve", "--config", str(config)],
                stdout=log, stderr=subprocess.STDOUT, env=env))
            ports.append(port)
        deadline = time.monotonic() + 600
        while not all(ready(p) for p in ports):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every instance got partitions; logs in {folder}")
            time.sleep(0.2)
        publisher = threading.Thread(target=publish, args=(bootstrap, name, events, partitions))
        publisher.start()
        while sum(consumed(p) for p in ports) == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing consumed; logs in {folder}")
            time.sleep(0.05)
        start = time.monotonic()
        while committed(bootstrap, f"{name}-g", name) < events:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not finished; logs in {folder}")
            time.sleep(0.1)
        publisher.join()
        return events / (time.monotonic() - start)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)  # all at once: they leave the group together
        for proc in procs:
            stop(proc, 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers",
                        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure (the best kept)")
    args = parser.parse_args()
    b = args.bootstrap_servers

    def best(instances: int, store: str) -> float:
        return max(run(b, instances, store, args.events, args.partitions)
                   for _ in range(args.repeat))

    print(f"{args.events} events, {args.partitions} partitions, one logistic_regression model, "
          f"partition scope, checkpoints every 1 s; {os.cpu_count()} CPU cores")
    print("| instances | store | events/s |")
    print("| --- | --- | ---: |")
    figures = {}
    for instances in (1, 2, 3):
        figures[instances] = best(instances, "kafka")
        print(f"| {instances} | kafka | {figures[instances]:,.0f} |", flush=True)
    files = best(1, "files")
    print(f"| 1 | files | {files:,.0f} |")
    print(f"\nkafka store / file store, one instance: {figures[1] / files:.2f}")


if __name__ == "__main__":
    main()
