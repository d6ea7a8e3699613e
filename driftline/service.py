"""`driftline serve`: consumers -> pipeline -> metrics, one polled batch at a time.

Offsets are committed only after the batch they cover was processed (and its dead letters were
flushed), so a message is never skipped. SIGTERM and Ctrl-C finish the batch in hand, commit and
exit 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, Protocol

from consumers.deadletter import DeadLetters
from consumers.records import Record, where
from consumers.wire import Decoder, Rejection
from driftline.config import Settings
from driftline.http import StatusServer
from driftline.metrics import Metrics
from pipeline.core import Pipeline, build_pipeline

log = logging.getLogger("driftline.service")

COMMIT_INTERVAL = 1.0  # seconds between asynchronous offset commits


class Source(Protocol):
    def poll(self, timeout_ms: int = ...) -> list[Record]: ...
    def commit(self, next_offsets: Mapping[int, int], *, wait: bool = ...) -> None: ...
    def lag(self) -> dict[int, int]: ...
    def close(self) -> None: ...


class Service:
    """Drives one pipeline from one source; the loop of `driftline serve`."""

    def __init__(
        self,
        source: Source,
        pipeline: Pipeline,
        dead_letters: DeadLetters,
        metrics: Metrics,
        decoder: Decoder | None = None,
    ) -> None:
        self.source = source
        self.pipeline = pipeline
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.decoder = decoder or Decoder()
        self.outcomes: Counter[str] = Counter()
        self.next_offsets: dict[int, int] = {}
        self.started = time.time()
        self.last_batch_time: float | None = None
        self.lag: dict[int, int] = {}

    def process(self, records: list[Record]) -> None:
        """Decode, learn and dead-letter one batch; then update the metrics once."""
        start = time.perf_counter()
        decode = self.decoder.decode
        process = self.pipeline.process
        learned = unlabelled = 0
        reasons: Counter[str] = Counter()
        for record in records:
            event = decode(record.value)
            if not isinstance(event, Rejection):
                try:
                    process(event.x, event.y)
                except Exception as exc:  # a model's bug must not stop the service
                    event = Rejection("model_error", f"{type(exc).__name__}: {exc}")
                else:
                    if event.y is None:
                        unlabelled += 1
                    else:
                        learned += 1
            if isinstance(event, Rejection):
                self.dead_letters.send(record, event)
                reasons[event.reason] += 1
                log.warning(
                    "dead-lettered %s: %s (%s)", where(record), event.reason, event.detail
                )
            self.next_offsets[record.partition] = record.offset + 1
        if reasons:
            self.dead_letters.flush()  # before the commit, so a dead letter is never lost
        counts = {
            "learned": learned,
            "unlabelled": unlabelled,
            "dead_lettered": sum(reasons.values()),
        }
        self.outcomes.update(counts)
        now = time.time()
        self.last_batch_time = now
        m = self.metrics
        m.observe_events(counts, reasons)
        m.observe_models(self.pipeline.snapshot())
        if records and records[-1].timestamp > 0:
            m.observe_latency([now - records[-1].timestamp / 1000.0])
        m.batch_seconds.observe(time.perf_counter() - start)

    def run(
        self,
        stop: threading.Event,
        poll_timeout_ms: int = 200,
        max_events: int | None = None,
    ) -> None:
        """Poll, process, commit until `stop` is set (or `max_events` were consumed); then a
        last synchronous commit."""
        last_lag = last_commit = 0.0
        try:
            while not stop.is_set():
                if max_events is not None and self.outcomes.total() >= max_events:
                    break
                records = self.source.poll(timeout_ms=poll_timeout_ms)
                if records:
                    self.process(records)
                now = time.monotonic()
                # Committed offsets serve lag monitoring and restarts; once a second is plenty
                # and keeps a broker round trip off every batch.
                if now - last_commit >= COMMIT_INTERVAL and self.next_offsets:
                    self.source.commit(self.next_offsets)
                    last_commit = now
                if now - last_lag >= 1.0:
                    self.lag = self.source.lag()
                    self.metrics.observe_lag(self.lag)
                    last_lag = now
        finally:
            self.dead_letters.flush()
            try:
                self.source.commit(self.next_offsets, wait=True)
            finally:
                self.source.close()

    def status(self) -> dict[str, Any]:
        """What the dashboard page shows (a JSON-friendly dict)."""
        return {
            "uptime_seconds": round(time.time() - self.started, 3),
            "events": dict(self.outcomes),
            "lag": {str(p): v for p, v in self.lag.items()},
            "models": {
                name: stats.__dict__ for name, stats in self.pipeline.snapshot().items()
            },
        }


def _connect_source(settings: Settings, stop: threading.Event) -> Any:
    """A Kafka consumer, waiting with backoff while the broker cannot be reached."""
    from consumers.kafka_io import KafkaError, KafkaSource

    k = settings.kafka
    delay = 0.5
    while not stop.is_set():
        try:
            return KafkaSource(
                k.bootstrap_servers, k.topic, k.group_id, k.auto_offset_reset, k.max_poll_records
            )
        except KafkaError as exc:
            log.warning(
                "cannot reach Kafka at %s (%s); retrying in %.1f s",
                k.bootstrap_servers, exc, delay,
            )
            stop.wait(delay)
            delay = min(delay * 2, 10.0)
    return None


def serve(settings: Settings) -> int:
    """Run the service until SIGTERM or Ctrl-C; the exit status."""
    from consumers.kafka_io import KafkaError, KafkaSink, create_topic

    pipeline = build_pipeline(settings)  # validates presets, factories, detector parameters
    metrics = Metrics()
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: finishing the batch in hand", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    holder: dict[str, Service] = {}
    server = StatusServer(
        settings.metrics.host,
        settings.metrics.port,
        metrics,
        lambda: holder["service"].status() if "service" in holder else {},
    )
    server.start()
    log.info("metrics and dashboard on http://%s:%d/", settings.metrics.host, server.port)
    source = _connect_source(settings, stop)
    if source is None:
        server.stop()
        return 0
    try:  # made up front, so the first dead letter does not wait for topic auto-creation
        create_topic(settings.kafka.bootstrap_servers, settings.dead_letter_topic)
    except KafkaError as exc:
        log.warning("cannot create the dead-letter topic %s: %s", settings.dead_letter_topic, exc)
    sink = KafkaSink(settings.kafka.bootstrap_servers)
    service = Service(
        source, pipeline, DeadLetters(sink, settings.dead_letter_topic), metrics
    )
    holder["service"] = service
    log.info(
        "consuming %s as group %s; models: %s; detector %s, response %s",
        settings.kafka.topic, settings.kafka.group_id,
        ", ".join(s.name for s in settings.models),
        settings.drift.detector, settings.drift.response,
    )
    try:
        service.run(stop)
    finally:
        sink.close()
        server.stop()
    log.info("stopped after %d events", sum(service.outcomes.values()))
    return 0
