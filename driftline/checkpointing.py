"""Where each partition resumes, and when and what is saved so that a restart resumes there.

A checkpoint is the whole learning state together with the next offset of each partition
(`driftline.checkpoint` stores it: signed, atomic files). The `Checkpointer` owns those offsets
and everything that depends on them:

- the cadence: a save every `interval_seconds`, skipped when nothing was consumed since the last
  one (that one is still the whole state, so the checkpoint age restarts from now);
- the order of a save: dead letters are flushed first, so a checkpoint never covers an offset
  whose dead letter could still be lost;
- where partitions start: on every assignment, at the checkpointed offset, else at the start
  the configuration names (`auto_offset_reset`), never at the group's committed offset;
- restore on start, refused when the checkpoint holds other models than the configured ones;
- the group's committed offsets, which serve lag monitoring only (once a second);
- the last good state, kept in memory as well: after a failure in the middle of a batch (a dead
  letter the broker refused, say) the service rolls back to it and reads again from its offsets,
  so no event is learned twice or lost.

With the Kafka store (`state_store`), a checkpoint is a transaction instead: the state of every
scope unit that moved, the consumed offsets (fenced by the group's metadata), and the predictions
and dead letters sent since the last one become visible together; a failure aborts it and rolls
back to the last committed state. On assignment the units of the new partitions are restored
from the state topic (`load_units`), unless the one in memory is already the committed one.

It is not thread-safe: the service calls it from the loop and from rebalance callbacks under its
own lock.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from consumers.errors import StreamError
from consumers.records import events_partition
from consumers.source import Source
from driftline.checkpoint import CheckpointStore, State, dumps
from driftline.errors import ConfigError
from driftline.scope import GLOBAL, Partitioned, unit_key
from driftline.state_store import KafkaStateStore
from pipeline.ensemble import DriftEnsemble

log = logging.getLogger("driftline.checkpointing")

COMMIT_INTERVAL = 1.0  # seconds between asynchronous group commits


class Flushable(Protocol):
    def flush(self) -> None: ...


class Transactions(Protocol):
    in_transaction: bool

    def commit(self, topic: str, next_offsets: Mapping[int, int], group_metadata: Any,
               labels_topic: str | None = None) -> None:
        ...

    def abort(self) -> None: ...

    def flush(self, timeout: float | None = None) -> None: ...


def model_names(pipeline: DriftEnsemble) -> list[str]:
    """The pipeline's models in configuration order, set-aside ones included."""
    return pipeline.member_names


class Checkpointer:
    """The offsets of one service and its checkpoints in `store` (None: offsets only)."""

    def __init__(
        self,
        store: CheckpointStore | None,
        dead_letters: Flushable,
        *,
        interval_seconds: float = 5.0,
        offset_reset: str = "earliest",
        observe: Callable[[float], None] = lambda seconds: None,
        clock: Callable[[], float] = time.monotonic,
        scope: str = GLOBAL,
        state_store: KafkaStateStore | None = None,
        transactions: Transactions | None = None,
        restore_timeout: float = 90.0,
    ) -> None:
        self.store = store
        self.scope = scope
        self.state_store = state_store
        self.transactions = transactions
        self.restore_timeout = restore_timeout  # how long a unit's newest state may stay unread
        self._source: Any = None  # the consumer, for its group metadata (Kafka store)
        self.dead_letters = dead_letters
        self.interval = interval_seconds
        self.offset_reset = offset_reset
        self._observe = observe  # the seconds each save took
        self._clock = clock
        # partition -> next offset to read. The loop writes it record by record, in place.
        self.offsets: dict[int, int] = {}
        self.restored_offsets: dict[int, int] = {}
        self.saved_time: float | None = None  # Unix time the state was last fully saved
        self._saved_offsets: dict[int, int] = {}
        self._due = clock() + interval_seconds
        self._commit_due = 0.0
        self._last_good: bytes | None = None  # the pickle of the last state saved or restored
        # The file store's periodic writes (signing, writing, two fsyncs: some 5 ms, more on a
        # busy disk) run on one thread of their own, in order, while the loop goes on; every
        # other save, and anything that reads the files, waits for the one in flight first.
        self._writer: ThreadPoolExecutor | None = None
        self._writing: Future | None = None
        # partition -> the offset of the first record read from it while it had no saved
        # offset: where a rollback starts it again (its start position was decided once).
        self.first_offsets: dict[int, int] = {}

    # --- restore and save ---------------------------------------------------------------------

    def restore(self, configured: DriftEnsemble) -> State | None:
        """The newest valid checkpoint's state, whose offsets become ours; None when there is
        none. Raises `ConfigError` when it holds other models than the `configured` pipeline."""
        if self.store is None or self.state_store is not None:
            return None  # the Kafka store restores on assignment, unit by unit
        self.settle()
        loaded = self.store.load_latest()
        if loaded is None:
            log.info("no checkpoint in %s: starting from scratch", self.store.directory)
            return None
        state, path = loaded
        configured_names, saved_names = model_names(configured), model_names(state.pipeline)
        if isinstance(configured, Partitioned) != isinstance(state.pipeline, Partitioned):
            held = "partition states" if isinstance(state.pipeline, Partitioned) else "one state"
            raise ConfigError(
                f"checkpoint.scope: checkpoint {path} holds {held}, not what the configured "
                "scope needs; restore the setting or use a new checkpoint.dir"
            )
        if configured_names != saved_names:
            raise ConfigError(
                f"[[models]]: the configured models {configured_names} differ from those of "
                f"checkpoint {path} {saved_names}; restore the configuration or use a new "
                "checkpoint.dir"
            )
        self._last_good = dumps(state)
        self.offsets.clear()  # in place: the loop holds a reference
        self.offsets.update(state.offsets)
        self.restored_offsets = dict(state.offsets)
        self._saved_offsets = dict(state.offsets)
        self.saved_time = state.created
        log.info(
            "restored %s: offsets %s, %d events learned",
            path.name, state.offsets, state.pipeline.labelled,
        )
        return state

    def due(self) -> bool:
        """Whether a save is due now. With nothing consumed since the last save, that one is
        still the whole state: it counts as fresh and no file is written."""
        now = self._clock()
        if now < self._due:
            return False
        self._due = now + self.interval
        if self.offsets == self._saved_offsets:
            self.saved_time = time.time()
            return False
        return True

    def save(
        self,
        pipeline: DriftEnsemble,
        *,
        outcomes: Mapping[str, int],
        dead_letters: Mapping[str, int],
        pending: object = None,
        predictions: Mapping[str, int] | None = None,
        predictions_correct: Mapping[str, int] | None = None,
        background: bool = False,
    ) -> None:
        """Flush the dead letters, then save the state with the offsets it has consumed up to.
        `background`: with the file store, the state is pickled now and written by a thread of
        its own (`settle` waits for it)."""
        self.dead_letters.flush()  # first: a checkpoint must not cover a lost dead letter
        start = time.perf_counter()
        state = State(
            pipeline=pipeline,
            offsets=dict(self.offsets),
            outcomes=dict(outcomes),
            dead_letters=dict(dead_letters),
            pending=pending,
            predictions=dict(predictions or {}),
            predictions_correct=dict(predictions_correct or {}),
        )
        body = dumps(state)
        if self.state_store is not None:
            self._commit_transaction(state)
            self._last_good = body
            self._saved_offsets = state.offsets
            self.saved_time = state.created
            self._observe(time.perf_counter() - start)
            return
        self._last_good = body
        if self.store is None:
            self._saved_offsets = state.offsets
            return
        self.settle()  # one write at a time, in order; the last one's error is raised here
        if background:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="driftline-checkpoint")
            self._writing = self._writer.submit(self._write, state, body, start)
        else:
            self._write(state, body, start)

    def _write(self, state: State, body: bytes, start: float) -> None:
        assert self.store is not None
        path = self.store.save(state, body)
        self._saved_offsets = state.offsets
        self.saved_time = state.created
        self._observe(time.perf_counter() - start)
        log.debug("checkpoint %s: offsets %s", path.name, state.offsets)

    def settle(self) -> None:
        """Wait for the checkpoint being written in the background, if any; a failure to write
        it is raised here (an `OSError`, as from a save)."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def _commit_transaction(self, state: State) -> None:
        """Write the units that moved and commit them with the offsets of our partitions."""
        assert self.state_store is not None and self.transactions is not None
        source = self._source
        assigned = set(source.assignment()) if source is not None else set(state.offsets)
        offsets = {p: o for p, o in state.offsets.items() if p in assigned}
        moved = [p for p, o in offsets.items() if self._saved_offsets.get(p) != o]
        if not moved and not self.transactions.in_transaction:
            return
        if isinstance(state.pipeline, Partitioned):
            # A unit holds the offsets of its events partition and of its labels partition.
            for p in sorted({events_partition(s) for s in moved}):
                if p in state.pipeline:
                    self.state_store.write(unit_key(self.scope, p), State(
                        pipeline=state.pipeline[p],
                        offsets={s: o for s, o in offsets.items() if events_partition(s) == p},
                        created=state.created,
                        # its events waiting for a label (a PartitionedPending's store)
                        pending=(state.pending.get(p) if isinstance(state.pending, dict)
                                 else None)))
        elif moved:
            self.state_store.write(GLOBAL, state)
        self.transactions.flush()
        self.state_store.check()
        metadata = source.group_metadata() if source is not None else None
        self.transactions.commit(source.topic if source is not None else "", offsets, metadata,
                                 getattr(source, "labels_topic", None))

    def load_units(self, source: Source, partitions: list[int]) -> dict[str, State | None]:
        """Kafka store: the committed state of each unit of newly assigned `partitions` (None:
        it has none yet), left out where the one in memory is already the committed one."""
        assert self.state_store is not None
        self._source = source
        committed: dict[int, int | None] = source.committed(partitions)  # type: ignore[attr-defined]
        units: dict[str, list[int]] = {}
        for p in partitions:
            units.setdefault(unit_key(self.scope, events_partition(p)), []).append(p)
        out: dict[str, State | None] = {}
        for unit, parts in units.items():
            # Ours is current when we committed it last: nobody has moved the group's offsets.
            if all(committed[p] is not None
                   and self._saved_offsets.get(p) == self.offsets.get(p) == committed[p]
                   for p in parts):
                continue
            out[unit] = self.state_store.wait_for(
                unit, {p: committed[p] for p in parts}, self.restore_timeout)
        return out

    def adopt(self, partition: int, offset: int | None) -> None:
        """A restored unit's committed offset for `partition` (None: none, start afresh)."""
        if offset is None:
            self.forget([partition])
        else:
            self.offsets[partition] = self._saved_offsets[partition] = offset
            self.restored_offsets[partition] = offset

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop what we know of partitions another instance owns now (Kafka store)."""
        for p in partitions:
            self.offsets.pop(p, None)
            self._saved_offsets.pop(p, None)
            self.first_offsets.pop(p, None)

    def mark_good(self, state: State) -> None:
        """Take `state` (with our offsets) as the last good one without writing a file: where a
        rollback goes back to before the first save."""
        self._last_good = dumps(state)

    def roll_back(self, source: Source) -> State | None:
        """Back to the last good state: its offsets become ours and the consumer is positioned
        at them. Returns that state (a copy), or None if there is none."""
        if self.transactions is not None:
            self.transactions.abort()  # what it holds was never visible; it never will be
        if self.state_store is not None:
            self.state_store.discard()
        if self._last_good is None:
            return None
        state: State = pickle.loads(self._last_good)
        self.offsets.clear()
        self.offsets.update(state.offsets)
        for partition in source.assignment():
            offset = state.offsets.get(partition, self.first_offsets.get(partition))
            try:
                if offset is None:
                    source.seek_to_start(partition, self.offset_reset)
                else:
                    source.seek(partition, offset)
            except StreamError as exc:  # revoked meanwhile: its new owner decides
                log.debug("roll back of %s[%d] skipped: %s", source.topic, partition, exc)
        log.warning("rolled back to the last good state: offsets %s", state.offsets)
        return state

    # --- positions ----------------------------------------------------------------------------

    def on_assign(self, source: Source, partitions: list[int]) -> None:
        """Position newly assigned partitions at our offsets, not at the group's."""
        self._source = source
        for partition in partitions:
            offset = self.offsets.get(partition)
            if offset is None:
                source.seek_to_start(partition, self.offset_reset)
            else:
                source.seek(partition, offset)
        log.info("assigned %s partitions %s at offsets %s", source.topic, partitions,
                 {p: self.offsets.get(p, self.offset_reset) for p in partitions})

    def rewind(self, source: Source) -> None:
        """Back to our offsets after a failure left the consumer's position past them."""
        for partition, offset in self.offsets.items():
            try:
                source.seek(partition, offset)
            except StreamError as exc:  # not assigned any more: its new owner decides
                log.debug("rewind of %s[%d] skipped: %s", source.topic, partition, exc)

    def commit(self, source: Source, *, wait: bool = False) -> None:
        """Commit our offsets to the group: at most once a `COMMIT_INTERVAL`, unless `wait`
        (then synchronously, at once)."""
        if self.state_store is not None:
            return  # the offsets are committed in each checkpoint's transaction
        now = self._clock()
        if not self.offsets or (not wait and now < self._commit_due):
            return
        source.commit(dict(self.offsets), wait=wait)
        self._commit_due = now + COMMIT_INTERVAL
