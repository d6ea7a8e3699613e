"""`checkpoint.store = "kafka"`: the learning state in a compacted topic, one state per scope unit.

Each unit (the global state, or one input partition's) is one logical message keyed by the unit
("global", "partition-3"), on state-topic partition 0 (global) or the input partition modulo
the state topic's partitions. Its value is signed like a checkpoint file
(``MAGIC | HMAC-SHA256 | u32 header length | JSON header | pickle(State)``, the same key
handling) and split into chunks below the broker's message limit; every chunk carries headers
`driftline.state.id` (one id per write) and `driftline.state.chunk` ("i/n"). The writes go through
the instance's transactional producer, in the same transaction as the consumed offsets, the
predictions and the dead letters, so a read_committed reader sees whole states only, and always
the one that goes with the group's committed offsets.
"""

from __future__ import annotations

import json
import logging
import pickle
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from consumers.errors import DeliveryFailed
from driftline.checkpoint import (
    _HEAD,
    FORMAT_VERSION,
    KEY_ENV,
    Binding,
    CheckpointError,
    State,
    _split,
    dumps,
    sign,
    verify,
)
from driftline.errors import ConfigError
from driftline.scope import GLOBAL

log = logging.getLogger("driftline.state_store")

CHUNK_BYTES = 900_000  # below a broker's default message.max.bytes (1,048,588) with headers
ID_HEADER = "driftline.state.id"
CHUNK_HEADER = "driftline.state.chunk"
STATE_TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    # Compaction never touches the active segment: roll it hourly so old states go.
    "segment.ms": "3600000",
}


class Sender(Protocol):
    def send(self, topic: str, value: bytes, key: bytes | None = None,
             headers: Iterable[tuple[str, bytes]] | None = None,
             partition: int | None = None) -> Any: ...


class Reader(Protocol):
    def partitions(self) -> list[int]: ...

    def read(self, partition: int, timeout: float = ...) -> list[
        tuple[bytes | None, bytes, dict[str, bytes], int]]: ...


class KafkaStateStore:
    """Writes unit states into the open transaction of `sender`; reads the latest committed."""

    def __init__(self, sender: Sender, reader: Reader, topic: str, key: bytes,
                 binding: Binding, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.sender = sender
        self.reader = reader
        self.topic = topic
        self.key = key
        self.binding = binding
        self.chunk_bytes = chunk_bytes
        self._partitions: int | None = None
        self._futures: list[tuple[str, Any]] = []

    def partition_of(self, unit: str) -> int:
        if self._partitions is None:
            self._partitions = max(1, len(self.reader.partitions()))
        if unit == GLOBAL:
            return 0
        return int(unit.rsplit("-", 1)[1]) % self._partitions

    def _header(self, unit: str) -> bytes:
        data = json.dumps({
            "format": FORMAT_VERSION, "unit": unit, "topic": self.binding.topic,
            "group_id": self.binding.group_id, "created": time.time(),
        }, separators=(",", ":")).encode()
        return _HEAD.pack(len(data)) + data

    def write(self, unit: str, state: State) -> None:
        """Send `unit`'s state, in chunks, into the open transaction."""
        blob = sign(self.key, self._header(unit) + dumps(state))
        write_id = uuid.uuid4().hex.encode()
        size = self.chunk_bytes
        count = max(1, -(-len(blob) // size))
        partition = self.partition_of(unit)
        for i in range(count):
            future = self.sender.send(
                self.topic, blob[i * size:(i + 1) * size], key=unit.encode(),
                headers=[(ID_HEADER, write_id), (CHUNK_HEADER, f"{i}/{count}".encode())],
                partition=partition,
            )
            self._futures.append((unit, future))

    def check(self) -> None:
        """After a flush: `DeliveryFailed` if a chunk written since the last check failed."""
        futures, self._futures = self._futures, []
        for unit, future in futures:
            if future is None:
                continue
            if not getattr(future, "is_done", True):
                raise DeliveryFailed(f"state of {unit} to {self.topic}: not acknowledged in time")
            if future.failed():
                error = future.exception
                raise DeliveryFailed(f"state of {unit} to {self.topic}: "
                                     f"{type(error).__name__}: {error}")

    def discard(self) -> None:
        self._futures = []

    def latest(self, unit: str) -> tuple[State, int] | None:
        """The newest committed state of `unit` and its offset in the state topic; None when
        there is none. Falls back past one that does not verify or load; `ConfigError` when
        states exist but none verifies with the key in use, or they are another topic's."""
        partition = self.partition_of(unit)
        wanted = unit.encode()
        complete: list[tuple[bytes, int]] = []  # (blob, offset of its last chunk)
        parts: list[bytes] = []
        current: bytes | None = None
        for key, value, headers, offset in self.reader.read(partition):
            if key != wanted:
                continue
            try:
                index, count = (int(n) for n in headers[CHUNK_HEADER].split(b"/"))
                write_id = headers[ID_HEADER]
            except (KeyError, ValueError):
                log.error("%s[%d]@%d: not a driftline state chunk; skipped",
                          self.topic, partition, offset)
                continue
            if index == 0:
                parts, current = [], write_id
            if write_id != current or index != len(parts):
                current, parts = None, []  # a torn write: wait for the next whole one
                continue
            parts.append(value)
            if len(parts) == count:
                complete.append((b"".join(parts), offset))
                current, parts = None, []
        problems = []
        for blob, offset in reversed(complete):
            where = f"state of {unit} at {self.topic}[{partition}]@{offset}"
            try:
                header, body = _split(verify(self.key, blob, where), where)
            except CheckpointError as exc:
                log.error("%s; falling back to the one before", exc)
                problems.append(str(exc))
                continue
            saved = (header.get("topic"), header.get("group_id"))
            if saved != (self.binding.topic, self.binding.group_id):
                raise ConfigError(
                    f"checkpoint.topic: {where} is the state of topic {saved[0]!r} read as group "
                    f"{saved[1]!r}, not {self.binding.topic!r} and {self.binding.group_id!r}; "
                    "use another state topic"
                )
            try:
                state = pickle.loads(body)
            except Exception as exc:  # a class renamed, a library changed...
                log.error("%s: cannot be loaded (%s: %s); falling back to the one before",
                          where, type(exc).__name__, exc)
                problems.append(f"{where}: cannot be unpickled")
                continue
            if isinstance(state, State):
                return state, offset
        if complete:
            raise ConfigError(
                f"checkpoint.topic: {self.topic} holds {len(complete)} state(s) of {unit} but none "
                f"can be restored ({'; '.join(problems[:3])}); every instance must sign with the "
                f"same key (${KEY_ENV} or checkpoint.key_file)"
            )
        return None

    def wait_for(self, unit: str, committed: Mapping[int, int | None],
                 timeout: float) -> State | None:
        """The state of `unit` that goes with the group's `committed` offsets. A newer state can
        be invisible for a while (behind another instance's open transaction, or its commit
        markers still on their way): read again until it shows, up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.latest(unit)
            state = found[0] if found else None
            behind = {
                p: (None if state is None else state.offsets.get(p), o)
                for p, o in committed.items()
                if o is not None and (state is None or state.offsets.get(p, -1) < o)
            }
            if not behind:
                return state
            if time.monotonic() > deadline:
                raise DeliveryFailed(
                    f"state of {unit} in {self.topic}: the group committed offsets past the "
                    f"newest readable state (partition: (state, committed) {behind}) for "
                    f"{timeout:.0f} s; a group used before without this state topic needs a "
                    "new group_id"
                )
            log.info("state of %s in %s not readable yet for offsets %s; reading again",
                     unit, self.topic, behind)
            time.sleep(0.5)
