"""`driftline serve`: builds the parts from the settings, wires them and runs the service.

The order matters: the metrics port answers first (liveness while Kafka is away); the service is
built before the consumer, which gets the service's rebalance callbacks, so nothing refers to a
service that does not exist yet.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

from consumers.deadletter import DeadLetters
from consumers.errors import StreamError
from consumers.kafka_io import (
    KafkaSink,
    KafkaSource,
    PartitionReader,
    TransactionalSink,
    create_topics,
    topic_partitions,
)
from driftline.backoff import Backoff
from driftline.checkpoint import Binding, CheckpointStore, load_key
from driftline.checkpointing import Checkpointer
from driftline.cluster import cluster
from driftline.config import Settings
from driftline.http import StatusServer
from driftline.labels import labels_topic
from driftline.learning import build_learner
from driftline.metrics import Metrics
from driftline.predictions import Predictions
from driftline.scope import GLOBAL, PARTITION, Partitioned
from driftline.service import Service
from driftline.state_store import STATE_TOPIC_CONFIGS, KafkaStateStore
from pipeline.pending import PendingLabels

log = logging.getLogger("driftline.app")

SINK_CLOSE_SECONDS = 2.0  # at exit, the wait for dead letters still unsent


def _instance_id(settings: Settings) -> str:
    """A stable static-membership id: this host and this state folder."""
    if settings.kafka.group_instance_id:
        return settings.kafka.group_instance_id
    where = os.path.abspath(settings.checkpoint.dir)
    return f"driftline-{socket.gethostname()}-{hashlib.sha256(where.encode()).hexdigest()[:8]}"


def _wait_for_topic(settings: Settings, stop: threading.Event) -> int:
    """Wait, with backoff while the broker cannot be reached, until the topic exists: its
    number of partitions; 0 when stopped first. Subscribing only then matters: a group join
    that races the topic's creation can end with no partitions assigned."""
    k = settings.kafka
    backoff = Backoff()
    announced = 0.0
    while not stop.is_set():
        try:
            partitions = topic_partitions(cluster(k), k.topic)
            if partitions:
                return len(partitions)
        except StreamError as exc:
            delay = backoff.next()
            log.warning("cannot reach Kafka at %s (%s); retrying in %.1f s",
                        k.bootstrap_servers, exc, delay)
            stop.wait(delay)
            continue
        backoff.reset()
        if time.monotonic() - announced > 30:
            log.info("waiting for topic %s to exist (publish to it or create it)", k.topic)
            announced = time.monotonic()
        stop.wait(1.0)
    return 0


def _labels_topic(settings: Settings, stop: threading.Event) -> str | None:
    """The labels topic to read too (`driftline.labels`), asked again while the broker cannot
    be reached; None when stopped first."""
    backoff = Backoff()
    while not stop.is_set():
        try:
            return labels_topic(settings, lambda topic: topic_partitions(
                cluster(settings.kafka), topic))
        except StreamError as exc:
            delay = backoff.next()
            log.warning("cannot describe the labels topic (%s); retrying in %.1f s", exc, delay)
            stop.wait(delay)
    return None


class NotConnected:
    """The dead-letter sink until the broker is reached (nothing is dead-lettered before)."""

    def send(self, topic: str, value: bytes, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        raise StreamError(f"not connected to Kafka: cannot write to {topic}")

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


def _connect(settings: Settings, service: Service, stop: threading.Event) -> KafkaSource | None:
    """The consumer, handed the service's callbacks; retried with backoff; None if stopped."""
    k = settings.kafka
    backoff = Backoff()
    while not stop.is_set():
        try:
            return KafkaSource(
                cluster(k), k.topic, k.group_id, k.auto_offset_reset, k.max_poll_records,
                group_instance_id=_instance_id(settings),
                session_timeout_ms=k.session_timeout_ms,
                on_assign=service.on_assign,
                on_revoke=service.on_revoke,
                on_lost=service.on_lost,
                # One global state must see every partition: never a subset to an instance.
                one_owner=settings.checkpoint.scope == GLOBAL,
                labels_topic=service.labels_topic,
            )
        except StreamError as exc:
            delay = backoff.next()
            log.warning("cannot consume %s (%s); retrying in %.1f s", k.topic, exc, delay)
            stop.wait(delay)
    return None


class Outputs:
    """What a checkpoint must not run ahead of: the dead letters, then the predictions."""

    def __init__(self, dead_letters: DeadLetters, predictions: Predictions | None) -> None:
        self.dead_letters = dead_letters
        self.predictions = predictions

    def flush(self) -> None:
        self.dead_letters.flush()
        if self.predictions is not None:
            self.predictions.flush()


def _transaction_timeout_ms(settings: Settings) -> int:
    # A transaction spans one checkpoint interval and the batch in hand. Short enough that a
    # dead instance's open transaction stops holding readers back soon; the broker's maximum is
    # 15 minutes by default.
    return min(900_000, max(30_000, int(settings.checkpoint.interval_seconds * 6000)))


def _start_kafka_store(settings: Settings, checkpointer: Checkpointer,
                       dead_letters: DeadLetters, predictions: Predictions | None,
                       key: bytes) -> TransactionalSink:
    """The state topic, the instance's transactional producer and the store over both."""
    k = settings.kafka
    topic = settings.state_topic  # created with the other topics
    # Stable across restarts of this instance: a restart aborts what the last one left open.
    transactions = TransactionalSink(
        cluster(k), f"{k.group_id}.{_instance_id(settings)}",
        transaction_timeout_ms=_transaction_timeout_ms(settings),
    )
    checkpointer.transactions = transactions
    checkpointer.restore_timeout = _transaction_timeout_ms(settings) / 1000 + 30
    checkpointer.state_store = KafkaStateStore(
        transactions, PartitionReader(cluster(k), topic), topic, key,
        Binding(k.topic, k.group_id),
    )
    dead_letters.sink = transactions
    if predictions is not None:
        predictions.sink = transactions
    return transactions


def serve(settings: Settings) -> int:
    """Run the service until SIGTERM or Ctrl-C; the exit status."""
    learner = build_learner(settings)  # validates presets, factories, detectors
    pipeline = (Partitioned(learner.member_names)
                if settings.checkpoint.scope == PARTITION else learner)
    directory = Path(settings.checkpoint.dir)
    key = load_key(directory, settings.checkpoint.key_file)
    store = CheckpointStore(
        directory,
        key,
        settings.checkpoint.keep,
        binding=Binding(settings.kafka.topic, settings.kafka.group_id),
    ) if settings.checkpoint.store == "files" else None
    metrics = Metrics()
    # The checkpoint is read before anything else starts: a key that verifies none of the
    # checkpoints, or checkpoints of another topic or group, stop the service at once (exit 2).
    dead_letters = DeadLetters(NotConnected(),
                               settings.dead_letter_topic, settings.validation.max_message_bytes)
    predictions = (Predictions(NotConnected(), settings.predictions_topic)
                   if settings.predictions_topic else None)
    checkpointer = Checkpointer(
        store, Outputs(dead_letters, predictions),
        interval_seconds=settings.checkpoint.interval_seconds,
        offset_reset=settings.kafka.auto_offset_reset,
        observe=metrics.checkpoint_seconds.observe,
        scope=settings.checkpoint.scope,
    )
    service = Service(pipeline, dead_letters, metrics, settings.validation.decoder(),
                      checkpointer=checkpointer, predictions=predictions,
                      new_learner=lambda: build_learner(settings),
                      pending=PendingLabels(settings.labels.max_pending,
                                            settings.labels.max_age_seconds))
    service.restore()
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: finishing the batch in hand", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server = StatusServer(
        settings.metrics.host,
        settings.metrics.port,
        metrics,
        lambda: metrics.latest.status(time.time()),
        ready=lambda: metrics.latest.ready(time.time()),
    )
    server.start()
    log.info("metrics and dashboard on http://%s:%d/", settings.metrics.host, server.port)
    try:
        partitions = _wait_for_topic(settings, stop)
        if not partitions:
            return 0
        # Checked once, at start: a labels topic created later is read after a restart.
        service.labels_topic = _labels_topic(settings, stop)
        if stop.is_set():
            return 0
        # Made up front, in one request, so the first dead letter or prediction does not wait
        # for topic auto-creation. Predictions and states get the input's partitions
        # (predictions are keyed like events; a state per input partition).
        topics: list[tuple[str, int, dict[str, str]]] = [(settings.dead_letter_topic, 1, {})]
        if settings.predictions_topic:
            topics.append((settings.predictions_topic, partitions, {}))
        if settings.checkpoint.store == "kafka":
            topics.append((settings.state_topic, partitions, STATE_TOPIC_CONFIGS))
        try:
            for topic in create_topics(cluster(settings.kafka), topics):
                log.info("created topic %s", topic)
        except StreamError as exc:
            log.warning("cannot create the topics %s: %s", [t for t, _, _ in topics], exc)
        sink: KafkaSink | TransactionalSink
        if settings.checkpoint.store == "kafka":
            sink = _start_kafka_store(settings, checkpointer, dead_letters, predictions, key)
        else:
            sink = KafkaSink(cluster(settings.kafka))
            dead_letters.sink = sink
            if predictions is not None:
                predictions.sink = sink
        sink.warm(t for t, _, _ in topics)
        try:
            source = _connect(settings, service, stop)
            if source is None:
                return 0
            log.info(
                "consuming %s as group %s; models: %s; detector %s, response %s",
                " and ".join(filter(None, (settings.kafka.topic, service.labels_topic))),
                settings.kafka.group_id,
                ", ".join(s.name for s in settings.models),
                settings.drift.detector, settings.drift.response,
            )
            # What start-up made (the modules of River, numpy and kafka-python, the restored
            # state: some 100,000 objects) lives as long as the process: out of the cycle
            # collector's sight, a full collection takes about a millisecond instead of 60,
            # a pause every event in flight would wait through (docs/benchmarks.md, Soak).
            gc.freeze()
            service.run(source, stop)
        finally:  # bounded: the broker may be away, and then unsent records wait
            sink.close(timeout=SINK_CLOSE_SECONDS)
    finally:
        server.stop()
    log.info("stopped after %d events", sum(service.outcomes.values()))
    return 0
