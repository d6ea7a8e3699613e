"""The loop of `driftline serve`: poll a batch, process it, emit what it changed.

Where each partition resumes, when the state is saved and the group's offsets committed is the
`Checkpointer`'s business; what the world sees is the `Snapshot` published after each batch.
SIGTERM and Ctrl-C set the stop event: the batch in hand is finished, then a final checkpoint
and a synchronous commit are written.
"""

from __future__ import annotations

import heapq
import logging
import operator
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from consumers.deadletter import DeadLetters
from consumers.errors import StreamError
from consumers.records import Record, events_partition, is_labels_slot, labels_slot, where
from consumers.source import Source
from consumers.wire import MODEL_ERROR, NOT_A_LABEL, REASONS, Decoder, Event, Rejection
from driftline.backoff import Backoff
from driftline.checkpoint import State
from driftline.checkpointing import Checkpointer
from driftline.errors import DriftlineError
from driftline.metrics import Metrics
from driftline.predictions import Predictions
from driftline.scope import GLOBAL, PARTITION, Partitioned, PartitionedPending
from driftline.snapshot import DEAD_LETTERED, LEARNED, OUTCOMES, UNLABELLED, Snapshot
from pipeline.ensemble import DriftEnsemble, LimitExceeded, ModelStats, Prediction
from pipeline.names import ENSEMBLE
from pipeline.pending import DUPLICATE_ID, UNKNOWN_ID, PendingLabels

log = logging.getLogger("driftline.service")

WATCH_INTERVAL = 1.0  # seconds between two readings of the lag and the assignment
UNASSIGNED_REJOIN = 20.0  # seconds without any assigned partition before rejoining the group
SHUTDOWN_FLUSH_SECONDS = 2.0  # the final wait for dead letters (the broker may be away)
# While events keep coming, the loop publishes a snapshot (the models' figures with the
# counters) at most this often.
STATS_EVERY = 0.5  # seconds
HOLD_LIMIT = 20_000  # records of a partition held back, at most, before polling it pauses


class Service:
    """Drives one pipeline from one source.

    Rebalance callbacks (`on_assign`, `on_revoke`, `on_lost`) may run on the Kafka client's
    thread while the loop is in a batch: a lock makes them wait for the batch in hand, so the
    state they save and the offsets they seek to always agree.
    """

    def __init__(
        self,
        pipeline: DriftEnsemble | Partitioned,
        dead_letters: DeadLetters,
        metrics: Metrics,
        decoder: Decoder | None = None,
        *,
        checkpointer: Checkpointer | None = None,
        predictions: Predictions | None = None,
        new_learner: Callable[[], DriftEnsemble] | None = None,
        pending: PendingLabels | None = None,
        labels_topic: str | None = None,
    ) -> None:
        # A `Partitioned` pipeline is partition scope: a learner per input partition, each made
        # by `new_learner` at the partition's first assignment.
        self.pipeline: Any = pipeline  # a DriftEnsemble, or a Partitioned of them
        self.partitioned = isinstance(pipeline, Partitioned)
        if self.partitioned and new_learner is None:
            raise ValueError("partition scope needs new_learner")
        self.new_learner = new_learner
        self.predictions = predictions
        self._names = list(pipeline.member_names)
        self.predicted = dict.fromkeys([*self._names, ENSEMBLE], 0)
        self.correct = dict.fromkeys([*self._names, ENSEMBLE], 0)
        self._partition_models: dict[int, Mapping[str, ModelStats]] = {}
        self._owned: set[int] = set()
        self._pending: set[int] = set()  # assigned partitions whose state is not restored yet
        self.fatal: DriftlineError | None = None  # raised by the loop (from a callback)
        pending = pending if pending is not None else PendingLabels()
        # Partition scope: a store per partition, saved with the partition's learner.
        self.pending: PendingLabels | PartitionedPending = (
            PartitionedPending(pending.max_pending, pending.max_age) if self.partitioned
            else pending)
        # Labels topic (its partition p is the source's ~p). Partitions p and ~p are taken in
        # the order they were written (Kafka timestamps), as one stream: a record newer than
        # the next one of the other, or than records of the other not polled yet, waits in
        # memory, unprocessed (its offset not consumed). So a label written after its event is
        # joined after it.
        self.labels_topic = labels_topic
        self._behind: Callable[[int], bool] = lambda partition: False
        self._caught_up: Callable[[int], bool] = lambda partition: True
        self._held: dict[int, list[Record]] = {}  # slot -> its records waiting, in order
        self._paused: set[int] = set()  # slots holding HOLD_LIMIT records: no more polled
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.decoder = decoder or Decoder()
        self.checkpointer = checkpointer or Checkpointer(None, dead_letters)
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.dead_letter_reasons = dict.fromkeys(REASONS, 0)
        self.started = time.time()
        self._models: Mapping[str, ModelStats] = (
            pipeline.stats() if isinstance(pipeline, DriftEnsemble) else {})
        self._stale = False  # learned since the figures were computed
        self._stale_units: set[int] = set()  # partition scope: the partitions that did
        self._stats_due = 0.0  # perf_counter time the loop recomputes them next
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
        if isinstance(state.pending, PendingLabels | PartitionedPending) and (
                isinstance(state.pending, PartitionedPending) == self.partitioned):
            # Keeping our bounds: the settings may have changed.
            self._bound(state.pending)
            self.pending = state.pending
        # Counters carry on across restarts.
        self.outcomes = {**dict.fromkeys(OUTCOMES, 0), **state.outcomes}
        self.dead_letter_reasons = {**dict.fromkeys(REASONS, 0), **(state.dead_letters or {})}
        self.predicted.update(state.predictions or {})
        self.correct.update(state.predictions_correct or {})
        self._refresh_stats()
        self._publish()

    def _bound(self, pending: PendingLabels | PartitionedPending) -> None:
        if isinstance(pending, PartitionedPending):
            pending.bound(self.pending.max_pending, self.pending.max_age)
        else:
            pending.max_pending, pending.max_age = self.pending.max_pending, self.pending.max_age

    def _pending_of(self, partition: int) -> PendingLabels:
        pending = self.pending
        return pending.of(partition) if isinstance(pending, PartitionedPending) else pending

    def _refresh_stats(self, partitions: set[int] | None = None) -> None:
        """The figures of the global learner, or of the partitions' (`None`: every owned one)."""
        if not self.partitioned:
            self._models = self.pipeline.stats()
            return
        units = self.pipeline
        for p in self._owned if partitions is None else partitions:
            if p in units:
                self._partition_models[p] = units[p].stats()

    def _refresh_if_stale(self) -> None:
        """The figures of what learned since they were last computed."""
        if self._stale:
            self._refresh_stats(self._stale_units if self.partitioned else None)
            self._stale_units = set()
            self._stale = False
        self._stats_due = time.perf_counter() + STATS_EVERY

    def _learner(self, partition: int) -> DriftEnsemble:
        """Partition scope: the partition's learner, made at its first assignment."""
        units = self.pipeline
        learner = units.get(partition)
        if learner is None:
            assert self.new_learner is not None
            learner = units[partition] = self.new_learner()
        return learner

    def _state(self) -> State:
        return State(
            pipeline=self.pipeline,
            offsets=dict(self.checkpointer.offsets),
            outcomes=dict(self.outcomes),
            dead_letters=dict(self.dead_letter_reasons),
            pending=self.pending,
            predictions=dict(self.predicted),
            predictions_correct=dict(self.correct),
        )

    def checkpoint(self, background: bool = False) -> None:
        """Save the state and offsets now (dead letters are flushed first); `background`: the
        periodic save, whose file the loop does not wait for (`Checkpointer.save`)."""
        with self._lock:
            self.checkpointer.save(
                self.pipeline,
                outcomes=self.outcomes,
                dead_letters=self.dead_letter_reasons,
                pending=self.pending,
                predictions=self.predicted,
                predictions_correct=self.correct,
                background=background,
            )

    def roll_back(self, source: Source) -> None:
        """After a failure in the middle of a batch (the state has learned part of it, a dead
        letter may be lost): back to the last good state and its offsets, to read them again."""
        with self._lock:
            self.dead_letters.clear_failures()
            if self.predictions is not None:
                self.predictions.discard()
            self._release_all(source)
            state = self.checkpointer.roll_back(source)
            if state is not None:
                self._carry_on_from(state)

    def on_assign(self, source: Source, partitions: list[int]) -> None:
        self._ever_assigned = True
        with self._lock:
            self._owned = set(source.assignment()) | set(partitions)
            if self.checkpointer.state_store is not None:
                # Restored by the loop, before its next batch: this callback runs on the
                # client's network thread, where the client's blocking calls are refused.
                self._pending.update(partitions)
            else:
                if self.partitioned:
                    for p in partitions:
                        if not is_labels_slot(p):
                            self._learner(p)
                self.checkpointer.on_assign(source, partitions)
            self._refresh_stats()

    def _restore_units(self, source: Source) -> None:
        """Kafka store: restore the committed state of the pending partitions' units, then
        position them. A failure leaves them pending (their records are not processed) and the
        loop tries again; a refusal (a key that verifies nothing) stops the service."""
        partitions = sorted(self._pending & set(source.assignment()))
        self._pending = set(partitions)
        if not partitions:
            return
        try:
            states = self.checkpointer.load_units(source, partitions)
        except DriftlineError as exc:
            self.fatal = exc
            return
        except StreamError as exc:
            log.error("%s partitions %s: cannot restore their state (%s); trying again",
                      source.topic, partitions, exc)
            return
        for unit, state in states.items():
            if not self.partitioned:
                if state is not None:
                    self._carry_on_from(state)
                    for p, offset in state.offsets.items():
                        self.checkpointer.adopt(p, offset)
                else:
                    self.pipeline = self.new_learner() if self.new_learner else self.pipeline
                    self.checkpointer.forget(partitions)
                continue
            p = int(unit.rsplit("-", 1)[1])
            slots = [s for s in partitions if events_partition(s) == p]  # its labels' too
            assert isinstance(self.pending, PartitionedPending)
            if state is None:
                self.pipeline[p] = self._fresh()
                self.pending.pop(p, None)
                for slot in slots:
                    self.checkpointer.adopt(slot, None)
            else:
                self.pipeline[p] = state.pipeline
                if isinstance(state.pending, PendingLabels):
                    self._bound(state.pending)
                    self.pending[p] = state.pending
                else:
                    self.pending.pop(p, None)
                for slot in slots:
                    self.checkpointer.adopt(slot, state.offsets.get(slot))
        if self.partitioned:
            for p in partitions:
                if not is_labels_slot(p):
                    self._learner(p)
        self.checkpointer.on_assign(source, partitions)
        self.checkpointer.mark_good(self._state())  # nothing uncommitted is in memory now
        self._pending = set()
        self._refresh_stats()  # the restored figures, before (or without) any new record
        log.info("%s partitions %s: restored %s from %s", source.topic, partitions,
                 sorted(states) or "nothing (the state in memory is the committed one)",
                 self.checkpointer.state_store.topic if self.checkpointer.state_store else "")

    def _fresh(self) -> DriftEnsemble:
        assert self.new_learner is not None
        return self.new_learner()

    def on_revoke(self, source: Source, partitions: list[int]) -> None:
        log.info("%s partitions %s revoked: checkpointing first", source.topic, partitions)
        try:
            self.checkpoint()
        except (StreamError, OSError) as exc:
            if self.checkpointer.state_store is None:
                raise
            # Not committed: back to the last committed state, which the new owner restores.
            log.error("%s: checkpoint before the revocation failed (%s): rolling back",
                      source.topic, exc)
            self.roll_back(source)
        self._let_go(partitions)

    def on_lost(self, source: Source, partitions: list[int]) -> None:
        if self.checkpointer.state_store is not None:
            # Evicted: our transaction can no longer commit (the group fences it); its work is
            # thrown away and the new owner restores the last committed state.
            log.warning("%s partitions %s lost (evicted from the group): aborting the open "
                        "transaction", source.topic, partitions)
            self.roll_back(source)
            self._let_go(partitions)
            return
        # Evicted from the group: the partitions have a new owner already. The local state is
        # still ours and consistent with our offsets, so it is saved all the same.
        log.warning("%s partitions %s lost (evicted from the group): checkpointing",
                    source.topic, partitions)
        self.checkpoint()

    def _let_go(self, partitions: list[int]) -> None:
        with self._lock:
            self._owned -= set(partitions)
            self._pending -= set(partitions)
            for p in partitions:
                self._partition_models.pop(p, None)
                self._held.pop(p, None)
                self._paused.discard(p)

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
        partitioned = self.partitioned
        step = None if partitioned else pipeline.step
        current = -1  # partition scope: the partition whose learner `step` is
        touched: set[int] = set()
        pending = self._pending
        send_prediction = self.predictions.send if self.predictions is not None else None
        scored: list[tuple[Prediction, Any]] = []  # counted after the loop (`_score_all`)
        offsets = self.checkpointer.offsets
        first_offsets = self.checkpointer.first_offsets
        reasons = self.dead_letter_reasons
        labels_topic = self.labels_topic
        deferred: dict[int, list[Record]] = {}  # slot -> its records left for later
        behind: dict[int, bool] = {}  # the source's positions do not move within a batch
        settled: dict[int, bool] = {}  # events partition -> read to its end (the broker's)
        remaining: dict[int, int] = {}  # slot -> its records still ahead in this batch
        if labels_topic is not None:
            records = self._merge(records, labels_topic, remaining)

        learned = unlabelled = dead = sent = 0
        # The whole batch decoded first, then learned: each loop stays hot in the processor's
        # caches, where one event's decoding between two steps evicts the other's code (Elec2,
        # one model, this batch in memory: 37 µs an event interleaved, 31-33 decoded first). The
        # decoder is stateless; a record skipped below was decoded for nothing, and will be again.
        events = [decode(record.value) for record in records]
        for record, event in zip(records, events, strict=True):
            partition = slot = record.partition
            if labels_topic is not None:
                if record.topic == labels_topic:
                    slot = labels_slot(partition)
                remaining[slot] -= 1
                if slot in deferred:
                    deferred[slot].append(record)  # after a deferred record of its partition
                    continue
                other = ~slot
                if other in deferred:
                    wait = record.timestamp > deferred[other][0].timestamp  # that one is older
                elif remaining.get(other):
                    wait = False  # the other's next records follow in this batch: newer
                else:  # the other's next is not polled yet: it may be older
                    if other not in behind:
                        behind[other] = self._behind(other)
                    wait = behind[other]
                if wait:
                    deferred[slot] = [record]
                    continue
            if pending and slot in pending:
                continue  # its state is not restored yet: read again once it is
            if partitioned and partition != current:
                current = partition
                step = self._learner(partition).step
                touched.add(partition)
            if slot < 0 and not isinstance(event, Rejection) and (
                    event.x is not None or event.y is None or event.id is None):
                event = Rejection(NOT_A_LABEL, f"{labels_topic} takes labels only: "
                                  '{"id": ..., "y": ...}')
            if not isinstance(event, Rejection):
                x = event.x
                if x is None or (event.y is None and event.id is not None):
                    # A delayed label, or an event that waits for one: joined by id.
                    learner = self._learner(partition) if partitioned else pipeline
                    joined = self._delayed(record, event, learner)
                    if isinstance(joined, Rejection):
                        if slot < 0 and joined.reason == UNKNOWN_ID:
                            if partition not in settled:  # asked of the broker once a batch
                                settled[partition] = (partition not in deferred
                                                      and self._caught_up(partition))
                            if not settled[partition]:
                                # Its event may be written but not read yet (the last fetch
                                # predates it, or it waits in hand): read on, then ask again.
                                deferred[slot] = [record]
                                continue
                        event = joined
                    elif joined is None:  # a label: its event scored and learned
                        learned += 1
                    else:  # an event now waiting for its label, with its prediction
                        unlabelled += 1
                        if send_prediction is not None:
                            send_prediction(record, event.id, joined)
                else:
                    try:
                        outcome = step(x, event.y)  # type: ignore[misc]
                    except LimitExceeded as exc:  # it would grow the state past a bound
                        event = Rejection(exc.reason, str(exc))
                    except Exception as exc:  # a bug outside the members must not stop us either
                        event = Rejection(MODEL_ERROR, f"{type(exc).__name__}: {exc}")
                    else:
                        if outcome.failed:  # a member raised; the others went on
                            failures = "; ".join(f"{n}: {e}" for n, e in outcome.failed)
                            log.warning("a model raised on %s: %.300s", where(record), failures)
                        if not outcome.handled:  # no member could learn it: dead-lettered
                            event = Rejection(MODEL_ERROR, failures)
                        else:
                            prediction = outcome.prediction
                            if send_prediction is not None:
                                send_prediction(record, event.id, prediction)
                            y = event.y
                            if y is None:
                                unlabelled += 1
                            else:
                                learned += 1
                                scored.append((prediction, y))
            if isinstance(event, Rejection):
                self.dead_letters.send(record, event)
                reasons[event.reason] += 1
                dead += 1
                sent += 1
            if slot not in offsets:  # where a roll back restarts a partition never saved
                first_offsets.setdefault(slot, record.offset)
            offsets[slot] = record.offset + 1
        if labels_topic is not None:
            self._held = deferred
        if scored:
            self._score_all(scored)
        if sent:  # before the offsets can be committed or checkpointed; given up on SIGTERM
            self.dead_letters.flush(cancel=self._stop.is_set)
        outcomes = self.outcomes
        outcomes[LEARNED] += learned
        outcomes[UNLABELLED] += unlabelled
        outcomes[DEAD_LETTERED] += dead
        self._stale_units.update(touched)  # their figures: at the next `_publish`
        self._stale = True
        now = time.time()
        if records and records[-1].timestamp > 0:
            self.metrics.observe_latency([now - records[-1].timestamp / 1000.0])
        self.metrics.batch_seconds.observe(time.perf_counter() - start)

    def _delayed(
        self, record: Record, event: Event, learner: DriftEnsemble
    ) -> Rejection | Prediction | None:
        """Keep an unlabelled event with an id until its label comes (its prediction), or score
        and learn the event a label names (None); else why not. The time is the record's Kafka
        timestamp, so that a replay after a crash expires exactly what the first run did. (One
        store per instance: in partition scope, a label whose event was read by another
        instance is unknown here.)"""
        now = record.timestamp / 1000.0 if record.timestamp > 0 else time.time()
        pending = self._pending_of(record.partition)
        try:
            if event.x is None:  # the label of an earlier event
                waiting = pending.take(event.id, now)
                if isinstance(waiting, str):
                    return Rejection(waiting, f"no event waits for a label under id {event.id!r}"
                                     if waiting == UNKNOWN_ID else
                                     f"the event of id {event.id!r} has had its label already")
                learner.check(waiting.x, event.y)  # a new class must fit in the bound
                outcome = learner.learn(waiting.x, event.y, waiting.prediction)
                self.metrics.label_delay.observe(max(0.0, now - waiting.arrived))
                if not outcome.handled:
                    return Rejection(MODEL_ERROR, "; ".join(f"{n}: {e}" for n, e in outcome.failed))
                self._score(waiting.prediction, event.y)
                return None
            if event.id in pending.waiting:
                return Rejection(DUPLICATE_ID, f"an event of id {event.id!r} waits already")
            learner.check(event.x, None)
            prediction = learner.predict(event.x)
            pending.add(event.id, event.x, prediction, now)
            return prediction
        except LimitExceeded as exc:
            return Rejection(exc.reason, str(exc))

    def _score(self, prediction: Prediction, y: object) -> None:
        """Count the prediction made at arrival against its delayed label."""
        self._score_all([(prediction, y)])

    def _score_all(self, pairs: list[tuple[Prediction, Any]]) -> None:
        """Count each (prediction, label): per member and for the ensemble, predicted and
        right. (After a batch's learning, a column per member counted in C: 0.5 µs an event
        counted one pair at a time, with one model, 0.14-0.17 µs so.)"""
        predicted, correct = self.predicted, self.correct
        ys = [y for _, y in pairs]  # never None: only labelled events are scored
        # A guess per member in every prediction (`pairs` is never empty): a column each.
        members = zip(*(p.members for p, _ in pairs), strict=True)
        columns = [*zip(self._names, members, strict=True),
                   (ENSEMBLE, [p.label for p, _ in pairs])]
        for name, guesses in columns:  # a None guess: no prediction, neither counted
            predicted[name] += len(guesses) - guesses.count(None)
            correct[name] += sum(map(operator.eq, guesses, ys))

    def _publish(self) -> None:
        """Publish a snapshot: the figures, counters and status of this moment, all together."""
        self._refresh_if_stale()
        self.metrics.publish(Snapshot(
            models=self._models,
            outcomes=dict(self.outcomes),
            dead_letters=dict(self.dead_letter_reasons),
            lag={p: n for p, n in self._lag.items() if not is_labels_slot(p)},
            assigned=tuple(p for p in self._assigned if not is_labels_slot(p)),
            restored_offsets=self.checkpointer.restored_offsets,
            started=self.started,
            last_poll=self._last_poll,
            checkpoint_time=self.checkpointer.saved_time,
            pending_labels=(self.pending.waiting if isinstance(self.pending, PartitionedPending)
                            else len(self.pending)),
            labels_expired=self.pending.expired,
            scope=PARTITION if self.partitioned else GLOBAL,
            partition_models={p: m for p, m in self._partition_models.items()
                              if p in self._owned},
            predictions=dict(self.predicted),
            predictions_correct=dict(self.correct),
        ))

    def run(self, source: Source, stop: threading.Event, poll_timeout_ms: int = 200) -> None:
        """Poll, process and emit until `stop` is set; then a final checkpoint and commit."""
        self._stop = stop
        if self.labels_topic is not None:
            self._behind = source.behind
            self._caught_up = source.caught_up
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
                        self._release_all(source)
                        self.checkpointer.rewind(source)
                    continue
                if self.fatal is not None:
                    raise self.fatal
                try:
                    with self._lock:
                        if self._pending:
                            # This batch was fetched before those partitions were positioned
                            # at their restored offsets: theirs are read again from there.
                            restoring = set(self._pending)
                            self._restore_units(source)
                            records = [r for r in records if r.partition not in restoring]
                        if records or self._held:
                            self._process(records)
                        if self._held or self._paused:
                            self._limit_held(source)
                        self._last_poll = time.time()
                        if self.checkpointer.due():
                            self.checkpoint(background=True)
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
                        self._release_all(source)
                        self.checkpointer.rewind(source)
                # While events keep coming, a snapshot at most every STATS_EVERY seconds (its
                # figures cost about a millisecond, and at a low rate a poll brings only a few
                # events); after a poll that found nothing, at once.
                if not records or time.perf_counter() >= self._stats_due:
                    self._publish()
        finally:
            self._shutdown(source)

    def _merge(self, records: list[Record], labels_topic: str,
               counts: dict[int, int]) -> list[Record]:
        """The records held back and the batch, in the order they were written (by timestamp,
        events first at a tie), each partition's in offset order still; `counts` gets each
        partition's records."""
        runs: dict[int, list[Record]] = self._held
        self._held = {}
        for r in records:
            slot = labels_slot(r.partition) if r.topic == labels_topic else r.partition
            runs.setdefault(slot, []).append(r)
        for slot, run in runs.items():
            counts[slot] = len(run)
        if len(runs) == 1:
            return next(iter(runs.values()))
        return list(heapq.merge(*runs.values(),
                                key=lambda r: (r.timestamp, r.topic == labels_topic)))

    def _limit_held(self, source: Source) -> None:
        """Past HOLD_LIMIT records held for a partition, poll no more of it (a backlog of small
        labels would otherwise be read whole into memory); below half, read on after them."""
        held = self._held
        for slot, records in held.items():
            if len(records) >= HOLD_LIMIT and slot not in self._paused:
                source.pause(slot)
                self._paused.add(slot)
        for slot in [s for s in self._paused if len(held.get(s, ())) < HOLD_LIMIT // 2]:
            self._paused.discard(slot)
            source.resume(slot)
            kept = held.get(slot)
            after = kept[-1].offset + 1 if kept else self.checkpointer.offsets.get(slot)
            try:
                if after is not None:
                    source.seek(slot, after)  # what was polled while paused was dropped
            except StreamError as exc:  # revoked meanwhile: its new owner reads it
                log.debug("resuming %s: %s", slot, exc)

    def _release_all(self, source: Source) -> None:
        """Before the consumer goes back to our offsets: nothing held or paused any more (what
        was held is read again from there)."""
        self._held = {}
        for slot in self._paused:
            source.resume(slot)
        self._paused = set()

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
