"""The loop of `driftline serve`: poll a batch, process it, emit what it changed.

Where each partition resumes, when the state is saved and the group's offsets committed is the
`Checkpointer`'s business; what the world sees is the `Snapshot` published after each batch.
SIGTERM and Ctrl-C set the stop event: the batch in hand is finished, then a final checkpoint
and a synchronous commit are written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

from consumers.deadletter import DeadLetters
from consumers.errors import StreamError
from consumers.records import Record, where
from consumers.source import Source
from consumers.wire import MODEL_ERROR, REASONS, Decoder, Event, Rejection
from driftline.backoff import Backoff
from driftline.checkpoint import State
from driftline.checkpointing import Checkpointer
from driftline.metrics import Metrics
from driftline.snapshot import DEAD_LETTERED, LEARNED, OUTCOMES, UNLABELLED, Snapshot
from pipeline.ensemble import DriftEnsemble, LimitExceeded, ModelStats
from pipeline.pending import DUPLICATE_ID, UNKNOWN_ID, PendingLabels

log = logging.getLogger("driftline.service")

WATCH_INTERVAL = 1.0  # seconds between two readings of the lag and the assignment
UNASSIGNED_REJOIN = 20.0  # seconds without any assigned partition before rejoining the group
SHUTDOWN_FLUSH_SECONDS = 2.0  # the final wait for dead letters (the broker may be away)


class Service:
    """Drives one pipeline from one source.

    Rebalance callbacks (`on_assign`, `on_revoke`, `on_lost`) may run on the Kafka client's
    thread while the loop is in a batch: a lock makes them wait for the batch in hand, so the
    state they save and the offsets they seek to always agree.
    """

    def __init__(
        self,
        pipeline: DriftEnsemble,
        dead_letters: DeadLetters,
        metrics: Metrics,
        decoder: Decoder | None = None,
        *,
        checkpointer: Checkpointer | None = None,
        pending: PendingLabels | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.pending = pending if pending is not None else PendingLabels()
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.decoder = decoder or Decoder()
        self.checkpointer = checkpointer or Checkpointer(None, dead_letters)
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.dead_letter_reasons = dict.fromkeys(REASONS, 0)
        self.started = time.time()
        self._models: Mapping[str, ModelStats] = pipeline.stats()
        self._lag: dict[int, int] = {}
        self._assigned: tuple[int, ...] = ()
        self._last_poll: float | None = None
        self._ever_assigned = False
        self._rejoins = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()  # run()'s: a dead-letter flush gives up once it is set
        self.checkpointer.mark_good(self._state())  # where a failure before any save goes back to
        self._publish()

    # --- checkpoints and rebalances -------------------------------------------------------------

    def restore(self) -> bool:
        """Carry on from the newest valid checkpoint; False when there is none."""
        with self._lock:
            state = self.checkpointer.restore(self.pipeline)
            if state is None:
                return False
            self._carry_on_from(state)
        return True

    def _carry_on_from(self, state: State) -> None:
        self.pipeline = state.pipeline
        if state.pending is not None:  # keeping our bounds: the settings may have changed
            state.pending.max_pending = self.pending.max_pending
            state.pending.max_age = self.pending.max_age
            self.pending = state.pending
        # Counters carry on across restarts.
        self.outcomes = {**dict.fromkeys(OUTCOMES, 0), **state.outcomes}
        self.dead_letter_reasons = {**dict.fromkeys(REASONS, 0), **(state.dead_letters or {})}
        self._models = self.pipeline.stats()
        self._publish()

    def _state(self) -> State:
        return State(
            pipeline=self.pipeline,
            offsets=dict(self.checkpointer.offsets),
            outcomes=dict(self.outcomes),
            dead_letters=dict(self.dead_letter_reasons),
            pending=self.pending,
        )

    def checkpoint(self) -> None:
        """Save the state and offsets now (dead letters are flushed first)."""
        with self._lock:
            self.checkpointer.save(
                self.pipeline,
                outcomes=self.outcomes,
                dead_letters=self.dead_letter_reasons,
                pending=self.pending,
            )

    def roll_back(self, source: Source) -> None:
        """After a failure in the middle of a batch (the state has learned part of it, a dead
        letter may be lost): back to the last good state and its offsets, to read them again."""
        with self._lock:
            self.dead_letters.clear_failures()
            state = self.checkpointer.roll_back(source)
            if state is not None:
                self._carry_on_from(state)

    def on_assign(self, source: Source, partitions: list[int]) -> None:
        self._ever_assigned = True
        with self._lock:
            self.checkpointer.on_assign(source, partitions)

    def on_revoke(self, source: Source, partitions: list[int]) -> None:
        log.info("%s partitions %s revoked: checkpointing first", source.topic, partitions)
        self.checkpoint()

    def on_lost(self, source: Source, partitions: list[int]) -> None:
        # Evicted from the group: the partitions have a new owner already. The local state is
        # still ours and consistent with our offsets, so it is saved all the same.
        log.warning("%s partitions %s lost (evicted from the group): checkpointing",
                    source.topic, partitions)
        self.checkpoint()

    # --- the loop ---------------------------------------------------------------------------------

    def process(self, records: list[Record]) -> None:
        """Decode, learn and dead-letter one batch, then publish a snapshot."""
        with self._lock:
            self._process(records)
            self._publish()

    def _process(self, records: list[Record]) -> None:
        start = time.perf_counter()
        decode = self.decoder.decode
        pipeline = self.pipeline
        step = pipeline.step
        offsets = self.checkpointer.offsets
        first_offsets = self.checkpointer.first_offsets
        reasons = self.dead_letter_reasons
        learned = unlabelled = dead = sent = 0
        for record in records:
            event = decode(record.value)
            if not isinstance(event, Rejection):
                x = event.x
                if x is None or (event.y is None and event.id is not None):
                    # A delayed label, or an event that waits for one: joined by id.
                    joined = self._delayed(record, event)
                    if isinstance(joined, Rejection):
                        event = joined
                    elif joined:
                        learned += 1
                    else:
                        unlabelled += 1
                else:
                    try:
                        outcome = step(x, event.y)
                    except LimitExceeded as exc:  # it would grow the state past a bound
                        event = Rejection(exc.reason, str(exc))
                    except Exception as exc:  # a bug outside the members must not stop us
                        event = Rejection(MODEL_ERROR, f"{type(exc).__name__}: {exc}")
                    else:
                        if outcome.failed:  # a member raised; the others went on
                            failures = "; ".join(f"{n}: {e}" for n, e in outcome.failed)
                            log.warning("a model raised on %s: %.300s", where(record), failures)
                        if not outcome.handled:  # no member could learn it: dead-lettered
                            event = Rejection(MODEL_ERROR, failures)
                        elif event.y is None:
                            unlabelled += 1
                        else:
                            learned += 1
            if isinstance(event, Rejection):
                self.dead_letters.send(record, event)
                reasons[event.reason] += 1
                dead += 1
                sent += 1
            partition = record.partition
            if partition not in offsets:  # where a roll back restarts a partition never saved
                first_offsets.setdefault(partition, record.offset)
            offsets[partition] = record.offset + 1
        if sent:  # before the offsets can be committed or checkpointed; given up on SIGTERM
            self.dead_letters.flush(cancel=self._stop.is_set)
        outcomes = self.outcomes
        outcomes[LEARNED] += learned
        outcomes[UNLABELLED] += unlabelled
        outcomes[DEAD_LETTERED] += dead
        self._models = pipeline.stats()
        now = time.time()
        if records and records[-1].timestamp > 0:
            self.metrics.observe_latency([now - records[-1].timestamp / 1000.0])
        self.metrics.batch_seconds.observe(time.perf_counter() - start)

    def _delayed(self, record: Record, event: Event) -> Rejection | bool:
        """Keep an unlabelled event with an id until its label comes (False), or score and
        learn the event a label names (True); else why not. The time is the record's Kafka
        timestamp, so that a replay after a crash expires exactly what the first run did."""
        now = record.timestamp / 1000.0 if record.timestamp > 0 else time.time()
        pending = self.pending
        try:
            if event.x is None:  # the label of an earlier event
                waiting = pending.take(event.id, now)
                if isinstance(waiting, str):
                    return Rejection(waiting, f"no event waits for a label under id {event.id!r}"
                                     if waiting == UNKNOWN_ID else
                                     f"the event of id {event.id!r} has had its label already")
                self.pipeline.check(waiting.x, event.y)  # a new class must fit in the bound
                outcome = self.pipeline.learn(waiting.x, event.y, waiting.prediction)
                self.metrics.label_delay.observe(max(0.0, now - waiting.arrived))
                if not outcome.handled:
                    return Rejection(MODEL_ERROR, "; ".join(f"{n}: {e}" for n, e in outcome.failed))
                return True
            if event.id in pending.waiting:
                return Rejection(DUPLICATE_ID, f"an event of id {event.id!r} waits already")
            self.pipeline.check(event.x, None)
            prediction = self.pipeline.predict(event.x)
            pending.add(event.id, event.x, prediction, now)
            return False
        except LimitExceeded as exc:
            return Rejection(exc.reason, str(exc))

    def _publish(self) -> None:
        self.metrics.publish(Snapshot(
            models=self._models,
            outcomes=dict(self.outcomes),
            dead_letters=dict(self.dead_letter_reasons),
            lag=self._lag,
            assigned=self._assigned,
            restored_offsets=self.checkpointer.restored_offsets,
            started=self.started,
            last_poll=self._last_poll,
            checkpoint_time=self.checkpointer.saved_time,
            pending_labels=len(self.pending),
            labels_expired=self.pending.expired,
        ))

    def run(self, source: Source, stop: threading.Event, poll_timeout_ms: int = 200) -> None:
        """Poll, process and emit until `stop` is set; then a final checkpoint and commit."""
        self._stop = stop
        backoff = Backoff()
        last_watch = 0.0
        unassigned_since = time.monotonic()
        try:
            while not stop.is_set():
                try:
                    records = source.poll(timeout_ms=poll_timeout_ms)
                except StreamError as exc:  # the broker is away; nothing was consumed
                    delay = backoff.next()
                    log.warning("%s; retrying in %.1f s", exc, delay)
                    stop.wait(delay)
                    with self._lock:
                        self.checkpointer.rewind(source)
                    continue
                try:
                    with self._lock:
                        if records:
                            self._process(records)
                        self._last_poll = time.time()
                        if self.checkpointer.due():
                            self.checkpoint()
                except (StreamError, OSError) as exc:
                    # In the middle of a batch (a dead letter not written, a checkpoint that
                    # could not be saved): the state may have learned part of the batch. Back
                    # to the last good state, to read its offsets again after a pause.
                    delay = backoff.next()
                    log.error("%s: rolling back to the last good state; retrying in %.1f s",
                              exc, delay)
                    self.roll_back(source)
                    stop.wait(delay)
                    continue
                try:
                    with self._lock:
                        self.checkpointer.commit(source)
                    now = time.monotonic()
                    if now - last_watch >= WATCH_INTERVAL:
                        self._lag = source.lag()
                        self._assigned = tuple(source.assignment())
                        unassigned_since = self._watch_assignment(source, now, unassigned_since)
                        last_watch = now
                    backoff.reset()
                except StreamError as exc:
                    # A commit or a metadata request failed (the broker away): the batch was
                    # processed whole; the consumer goes back to our offsets, to be sure.
                    delay = backoff.next()
                    log.warning("%s; retrying in %.1f s", exc, delay)
                    stop.wait(delay)
                    with self._lock:
                        self.checkpointer.rewind(source)
                self._publish()
        finally:
            self._shutdown(source)

    def _watch_assignment(self, source: Source, now: float, unassigned_since: float) -> float:
        """Rejoin when no partition has been assigned for a while (a join that raced the
        topic's metadata can stay empty); returns the new start of the unassigned spell."""
        if self._ever_assigned or self._assigned:
            return now
        # Only before any assignment ever, and a few times: with more instances than
        # partitions, an idle member is normal and must not keep the group rebalancing.
        if now - unassigned_since > UNASSIGNED_REJOIN and self._rejoins < 3:
            self._rejoins += 1
            log.warning("no partition of %s assigned for %.0f s: rejoining the group",
                        source.topic, now - unassigned_since)
            source.resubscribe()
            return now
        return unassigned_since

    def _shutdown(self, source: Source) -> None:
        try:
            # Bounded: a broker that is away must not hold the exit (not flushed in time, the
            # dead letters stay lost and no checkpoint is written: a restart replays them).
            self.dead_letters.flush(timeout=SHUTDOWN_FLUSH_SECONDS)
            self.checkpoint()
            with self._lock:
                self.checkpointer.commit(source, wait=True)
        except (StreamError, OSError) as exc:
            # Either the dead letters could not be flushed (no checkpoint: a restart replays
            # from the previous one) or the commit failed (the checkpoint holds the offsets).
            log.warning("final checkpoint and commit: %s", exc)
        finally:
            try:
                source.close()
            except StreamError as exc:
                log.warning("closing the consumer: %s", exc)
            self._publish()
