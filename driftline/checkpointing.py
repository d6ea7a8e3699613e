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

It is not thread-safe: the service calls it from the loop and from rebalance callbacks under its
own lock.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from consumers.errors import StreamError
from consumers.source import Source
from driftline.checkpoint import CheckpointStore, State, dumps
from driftline.errors import ConfigError
from pipeline.ensemble import DriftEnsemble

log = logging.getLogger("driftline.checkpointing")

COMMIT_INTERVAL = 1.0  # seconds between asynchronous group commits


class Flushable(Protocol):
    def flush(self) -> None: ...


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
    ) -> None:
        self.store = store
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
        # partition -> the offset of the first record read from it while it had no saved
        # offset: where a rollback starts it again (its start position was decided once).
        self.first_offsets: dict[int, int] = {}

    # --- restore and save ---------------------------------------------------------------------

    def restore(self, configured: DriftEnsemble) -> State | None:
        """The newest valid checkpoint's state, whose offsets become ours; None when there is
        none. Raises `ConfigError` when it holds other models than the `configured` pipeline."""
        if self.store is None:
            return None
        loaded = self.store.load_latest()
        if loaded is None:
            log.info("no checkpoint in %s: starting from scratch", self.store.directory)
            return None
        state, path = loaded
        configured_names, saved_names = model_names(configured), model_names(state.pipeline)
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
    ) -> None:
        """Flush the dead letters, then save the state with the offsets it has consumed up to."""
        self.dead_letters.flush()  # first: a checkpoint must not cover a lost dead letter
        start = time.perf_counter()
        state = State(
            pipeline=pipeline,
            offsets=dict(self.offsets),
            outcomes=dict(outcomes),
            dead_letters=dict(dead_letters),
            pending=pending,
        )
        self._last_good = body = dumps(state)
        if self.store is None:
            self._saved_offsets = state.offsets
            return
        path = self.store.save(state, body)
        self._saved_offsets = state.offsets
        self.saved_time = state.created
        self._observe(time.perf_counter() - start)
        log.debug("checkpoint %s: offsets %s", path.name, state.offsets)

    def mark_good(self, state: State) -> None:
        """Take `state` (with our offsets) as the last good one without writing a file: where a
        rollback goes back to before the first save."""
        self._last_good = dumps(state)

    def roll_back(self, source: Source) -> State | None:
        """Back to the last good state: its offsets become ours and the consumer is positioned
        at them. Returns that state (a copy), or None if there is none."""
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
        now = self._clock()
        if not self.offsets or (not wait and now < self._commit_due):
            return
        source.commit(dict(self.offsets), wait=wait)
        self._commit_due = now + COMMIT_INTERVAL
