"""`driftline serve`: consumers -> pipeline -> metrics, one polled batch at a time.

Offsets are committed only after the batch they cover was processed (and its dead letters were
flushed), so a message is never skipped. SIGTERM and Ctrl-C finish the batch in hand, commit and
exit 0.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from consumers.deadletter import DeadLetters
from consumers.kafka_io import KafkaError
from consumers.records import Record, where
from consumers.wire import Decoder, Rejection
from driftline.checkpoint import CheckpointStore, State, load_key
from driftline.config import Settings
from driftline.errors import ConfigError
from driftline.http import StatusServer
from driftline.learning import build_learner
from driftline.metrics import Metrics
from pipeline import DriftEnsemble, LimitExceeded

log = logging.getLogger("driftline.service")

COMMIT_INTERVAL = 1.0  # seconds between asynchronous offset commits
UNASSIGNED_REJOIN = 20.0  # seconds without any assigned partition before rejoining the group


class Source(Protocol):
    def poll(self, timeout_ms: int = ...) -> list[Record]: ...
    def commit(self, next_offsets: Mapping[int, int], *, wait: bool = ...) -> None: ...
    def lag(self) -> dict[int, int]: ...
    def close(self) -> None: ...


class Service:
    """Drives one pipeline from one source; the loop of `driftline serve`.

    With a checkpoint store, the state and the next offset of each partition are saved together
    every `checkpoint_interval` seconds, when partitions are revoked and on shutdown; on start and
    on every assignment the source is positioned at the checkpointed offsets (never at the
    group's committed ones), so every event is learned exactly once across crashes.
    """

    def __init__(
        self,
        source: Source,
        pipeline: DriftEnsemble,
        dead_letters: DeadLetters,
        metrics: Metrics,
        decoder: Decoder | None = None,
        *,
        checkpoints: CheckpointStore | None = None,
        checkpoint_interval: float = 5.0,
        offset_reset: str = "earliest",
    ) -> None:
        self.source = source
        self.pipeline = pipeline
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.decoder = decoder or Decoder()
        self.checkpoints = checkpoints
        self.checkpoint_interval = checkpoint_interval
        self.offset_reset = offset_reset
        self.outcomes: Counter[str] = Counter()
        self.next_offsets: dict[int, int] = {}
        self.started = time.time()
        self.last_batch_time: float | None = None
        self.last_checkpoint_time: float | None = None
        self.last_poll_ok: float | None = None
        self.lag: dict[int, int] = {}
        self._checkpointed_offsets: dict[int, int] = {}
        self._ever_assigned = False
        self._rejoins = 0
        # Rebalance callbacks may run on the client's I/O thread: they wait for a batch in hand.
        self._lock = threading.RLock()
        metrics.checkpoint_age.set_function(self.checkpoint_age)

    # --- checkpoints and positions ------------------------------------------------------------

    def restore(self) -> bool:
        """Load the newest valid checkpoint into the service; False when there is none."""
        if self.checkpoints is None:
            return False
        loaded = self.checkpoints.load_latest()
        if loaded is None:
            log.info("no checkpoint in %s: starting from scratch", self.checkpoints.directory)
            return False
        state, path = loaded
        configured = self.pipeline.member_names
        saved = state.pipeline.member_names
        if configured != saved:
            raise ConfigError(
                f"[[models]]: the configured models {configured} differ from those of checkpoint "
                f"{path} {saved}; restore the configuration or use a new checkpoint.dir"
            )
        with self._lock:
            self.pipeline = state.pipeline
            self.decoder.label_kind = state.label_kind
            self.next_offsets = dict(state.offsets)
            self.outcomes = Counter(state.outcomes)
            self.last_checkpoint_time = state.created
            self._checkpointed_offsets = dict(state.offsets)
        for partition, offset in state.offsets.items():
            self.metrics.restored_offset.labels(str(partition)).set(offset)
        self.metrics.observe_models(self.pipeline.stats())
        self.metrics.observe_events(self.outcomes, {})  # counters carry on across restarts
        log.info(
            "restored %s: offsets %s, %d events learned",
            path.name, state.offsets, self.pipeline.labelled,
        )
        return True

    def checkpoint(self) -> None:
        """Save the state and offsets now (dead letters were flushed with their batch)."""
        if self.checkpoints is None:
            return
        start = time.perf_counter()
        with self._lock:
            state = State(
                pipeline=self.pipeline,
                offsets=dict(self.next_offsets),
                label_kind=self.decoder.label_kind,
                outcomes=dict(self.outcomes),
            )
            path = self.checkpoints.save(state)
            self.last_checkpoint_time = state.created
            self._checkpointed_offsets = state.offsets
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - start)
        log.debug("checkpoint %s: offsets %s", path.name, state.offsets)

    def checkpoint_age(self) -> float:
        if self.last_checkpoint_time is None:
            return float("nan")
        return max(0.0, time.time() - self.last_checkpoint_time)

    def on_assigned(self, partitions: list[int]) -> None:
        """Position newly assigned partitions at the state's offsets, not the group's."""
        seek = getattr(self.source, "seek", None)
        if seek is None:
            return
        self._ever_assigned = True
        with self._lock:
            for partition in partitions:
                offset = self.next_offsets.get(partition)
                if offset is None:
                    self.source.seek_to_start(partition, self.offset_reset)  # type: ignore[attr-defined]
                else:
                    seek(partition, offset)
        log.info("assigned partitions %s at offsets %s", partitions,
                 {p: self.next_offsets.get(p, self.offset_reset) for p in partitions})

    def on_revoked(self, partitions: list[int]) -> None:
        log.info("partitions %s revoked: checkpointing first", partitions)
        self.checkpoint()

    # --- the loop -----------------------------------------------------------------------------

    def process(self, records: list[Record]) -> None:
        """Decode, learn and dead-letter one batch; then update the metrics once."""
        with self._lock:
            self._process(records)

    def _process(self, records: list[Record]) -> None:
        start = time.perf_counter()
        decode = self.decoder.decode
        step = self.pipeline.step
        learned = unlabelled = dead = 0
        reasons: Counter[str] = Counter()
        for record in records:
            event = decode(record.value)
            if not isinstance(event, Rejection):
                try:
                    outcome = step(event.x, event.y)
                except LimitExceeded as exc:
                    event = Rejection(exc.reason, str(exc))
                except Exception as exc:  # a bug outside the members must not stop us either
                    event = Rejection("model_error", f"{type(exc).__name__}: {exc}")
                else:
                    if outcome.failed:
                        failures = "; ".join(f"{name}: {error}" for name, error in outcome.failed)
                        log.warning("model failed on %s: %s", where(record), failures[:300])
                    if not outcome.handled:  # no member could predict or learn it
                        event = Rejection("model_error", "; ".join(
                            f"{name}: {error}" for name, error in outcome.failed))
                    elif event.y is None:
                        unlabelled += 1
                    else:
                        learned += 1
            if isinstance(event, Rejection):
                self.dead_letters.send(record, event)
                reasons[event.reason] += 1
                dead += 1
                log.warning(
                    "dead-lettered %s: %s (%s)", where(record), event.reason, event.detail
                )
            self.next_offsets[record.partition] = record.offset + 1
        if reasons:
            self.dead_letters.flush()  # before the commit, so a dead letter is never lost
        counts = {
            "learned": learned,
            "unlabelled": unlabelled,
            "dead_lettered": dead,
        }
        self.outcomes.update(counts)
        now = time.time()
        self.last_batch_time = now
        m = self.metrics
        m.observe_events(counts, reasons)
        m.observe_models(self.pipeline.stats())
        if records and records[-1].timestamp > 0:
            m.observe_latency([now - records[-1].timestamp / 1000.0])
        m.batch_seconds.observe(time.perf_counter() - start)

    def run(
        self,
        stop: threading.Event,
        poll_timeout_ms: int = 200,
        max_events: int | None = None,
    ) -> None:
        """Poll, process, checkpoint and commit until `stop` is set (or `max_events` were
        consumed); then a final checkpoint and a synchronous commit."""
        last_lag = last_commit = 0.0
        last_checkpoint = unassigned_since = time.monotonic()
        backoff = 0.5
        try:
            while not stop.is_set():
                if max_events is not None and self.outcomes.total() >= max_events:
                    break
                try:
                    records = self.source.poll(timeout_ms=poll_timeout_ms)
                    if records:
                        self.process(records)
                    self.last_poll_ok = time.time()
                    now = time.monotonic()
                    if self.checkpoints and now - last_checkpoint >= self.checkpoint_interval:
                        if self.next_offsets != self._checkpointed_offsets:
                            self.checkpoint()
                        else:  # nothing new: the last checkpoint is still the whole state
                            self.last_checkpoint_time = time.time()
                        last_checkpoint = now
                    # Committed offsets serve lag monitoring only; once a second is plenty and
                    # keeps a broker round trip off every batch.
                    if now - last_commit >= COMMIT_INTERVAL and self.next_offsets:
                        self.source.commit(self.next_offsets)
                        last_commit = now
                    if now - last_lag >= 1.0:
                        self.lag = self.source.lag()
                        self.metrics.observe_lag(self.lag)
                        last_lag = now
                        unassigned_since = self._watch_assignment(now, unassigned_since)
                    backoff = 0.5
                except KafkaError as exc:
                    # The broker is away: the batch in hand was processed up to where it
                    # failed; rewind to our own offsets and retry with backoff.
                    log.warning("Kafka error (%s); retrying in %.1f s", exc, backoff)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                    self._rewind()
        finally:
            self._shutdown()

    def _watch_assignment(self, now: float, unassigned_since: float) -> float:
        """Rejoin when no partition has been assigned for a while (a join that raced the
        topic's metadata can stay empty); returns the new start of the unassigned spell."""
        assignment = getattr(self.source, "assignment", None)
        if assignment is None or self._ever_assigned or assignment():
            return now
        # Only before any assignment ever, and a few times: with more instances than
        # partitions, an idle member is normal and must not keep the group rebalancing.
        if now - unassigned_since > UNASSIGNED_REJOIN and self._rejoins < 3:
            self._rejoins += 1
            log.warning("no partition of the topic assigned for %.0f s: rejoining the group",
                        now - unassigned_since)
            self.source.resubscribe()  # type: ignore[attr-defined]
            return now
        return unassigned_since

    def _rewind(self) -> None:
        seek = getattr(self.source, "seek", None)
        if seek is None:
            return
        try:
            for partition, offset in self.next_offsets.items():
                seek(partition, offset)
        except (KafkaError, AssertionError, ValueError) as exc:  # not assigned any more
            log.debug("rewind skipped: %s", exc)

    def _shutdown(self) -> None:
        try:
            self.dead_letters.flush()
            self.checkpoint()
            self.source.commit(self.next_offsets, wait=True)
        except KafkaError as exc:
            log.warning("final commit failed (%s); the checkpoint holds the offsets", exc)
        finally:
            self.source.close()

    def ready(self) -> bool:
        """Consuming: partitions assigned and a poll succeeded in the last 10 seconds."""
        assignment = getattr(self.source, "assignment", None)
        assigned = bool(assignment()) if assignment is not None else True
        return assigned and self.last_poll_ok is not None and time.time() - self.last_poll_ok < 10

    def status(self) -> dict[str, Any]:
        """What the dashboard page shows (a JSON-friendly dict)."""
        return {
            "uptime_seconds": round(time.time() - self.started, 3),
            "events": dict(self.outcomes),
            "lag": {str(p): v for p, v in self.lag.items()},
            "checkpoint": {"age_seconds": None if self.last_checkpoint_time is None
                           else round(self.checkpoint_age(), 3)},
            "models": {
                name: stats.__dict__ for name, stats in self.pipeline.stats().items()
            },
        }


def _instance_id(settings: Settings) -> str:
    """A stable static-membership id: this host and this state folder."""
    if settings.kafka.group_instance_id:
        return settings.kafka.group_instance_id
    where = os.path.abspath(settings.checkpoint.dir)
    return f"driftline-{socket.gethostname()}-{hashlib.sha256(where.encode()).hexdigest()[:8]}"


def _connect_source(settings: Settings, stop: threading.Event, holder: dict[str, Any]) -> Any:
    """A Kafka consumer, waiting with backoff while the broker cannot be reached."""
    from consumers.kafka_io import KafkaSource, topic_partitions

    k = settings.kafka
    delay = 0.5
    waited_for_topic = 0.0
    while not stop.is_set():
        try:
            # Subscribe only once the topic exists: a group join that races the topic's
            # creation can end with no partitions assigned.
            if not topic_partitions(k.bootstrap_servers, k.topic):
                if waited_for_topic == 0.0 or time.monotonic() - waited_for_topic > 30:
                    log.info("waiting for topic %s to exist (publish to it or create it)", k.topic)
                    waited_for_topic = time.monotonic()
                stop.wait(1.0)
                continue
            return KafkaSource(
                k.bootstrap_servers, k.topic, k.group_id, k.auto_offset_reset, k.max_poll_records,
                group_instance_id=_instance_id(settings),
                session_timeout_ms=k.session_timeout_ms,
                on_assign=lambda partitions: holder["service"].on_assigned(partitions),
                on_revoke=lambda partitions: holder["service"].on_revoked(partitions),
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
    from consumers.kafka_io import KafkaSink, create_topic

    pipeline = build_learner(settings)  # validates presets, factories, detector parameters
    directory = Path(settings.checkpoint.dir)
    store = CheckpointStore(
        directory, load_key(directory, settings.checkpoint.key_file), settings.checkpoint.keep
    )
    metrics = Metrics()
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: finishing the batch in hand", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    holder: dict[str, Any] = {}
    server = StatusServer(
        settings.metrics.host,
        settings.metrics.port,
        metrics,
        lambda: holder["service"].status() if "service" in holder else {},
        ready=lambda: "service" in holder and holder["service"].ready(),
    )
    server.start()
    log.info("metrics and dashboard on http://%s:%d/", settings.metrics.host, server.port)
    try:
        source = _connect_source(settings, stop, holder)
        if source is None:
            return 0
        try:  # made up front, so the first dead letter does not wait for topic auto-creation
            create_topic(settings.kafka.bootstrap_servers, settings.dead_letter_topic)
        except KafkaError as exc:
            log.warning("cannot create the dead-letter topic %s: %s",
                        settings.dead_letter_topic, exc)
        sink = KafkaSink(settings.kafka.bootstrap_servers)
        v = settings.validation
        decoder = Decoder(v.max_message_bytes, dict(v.features) or None, v.allow_extra_features)
        dead_letters = DeadLetters(sink, settings.dead_letter_topic, v.max_message_bytes)
        service = Service(
            source, pipeline, dead_letters, metrics, decoder,
            checkpoints=store,
            checkpoint_interval=settings.checkpoint.interval_seconds,
            offset_reset=settings.kafka.auto_offset_reset,
        )
        service.restore()
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
    finally:
        server.stop()
    log.info("stopped after %d events", sum(service.outcomes.values()))
    return 0
