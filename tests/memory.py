"""In-memory stand-ins for a topic, so that a service test needs no broker.

    source = ListSource("events", [b'{"x": {"a": 1}, "y": true}'])

`ListSource` implements all of `consumers.source.Source` over one partition (0) and behaves like
a consumer in a group: the first poll assigns the partition (calling `on_assign` first, which may
seek), `revoke()` takes it away (calling `on_revoke`), and the next poll assigns it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from consumers.errors import NotAssigned
from consumers.records import Record
from consumers.source import OnPartitions


class ListSource:
    """A one-partition topic backed by a list; polls return up to `batch` records."""

    def __init__(
        self,
        topic: str,
        values: Iterable[bytes | None],
        batch: int = 500,
        *,
        on_assign: OnPartitions | None = None,
        on_revoke: OnPartitions | None = None,
        on_lost: OnPartitions | None = None,
    ) -> None:
        self.topic = topic
        self.records = [Record(topic, 0, i, v, 0) for i, v in enumerate(values)]
        self.batch = batch
        self.position = 0
        self.committed: dict[int, int] = {}
        self.closed = False
        self.assigned = False
        self.resubscribed = 0
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self.on_lost = on_lost or on_revoke

    def poll(self, timeout_ms: int = 0) -> list[Record]:
        if not self.assigned:  # joining the group: the callback positions the partition
            self.assigned = True
            if self.on_assign is not None:
                self.on_assign(self, [0])
        out = self.records[self.position : self.position + self.batch]
        self.position += len(out)
        return out

    def revoke(self, *, lost: bool = False) -> None:
        """A rebalance takes the partition away (`lost`: after this member was evicted)."""
        callback = self.on_lost if lost else self.on_revoke
        if callback is not None:
            callback(self, [0])
        self.assigned = False

    def seek(self, partition: int, offset: int) -> None:
        if partition != 0 or not self.assigned:
            raise NotAssigned(f"cannot seek {self.topic}[{partition}]@{offset}: not assigned")
        self.position = offset

    def seek_to_start(self, partition: int, reset: str) -> None:
        self.seek(partition, len(self.records) if reset == "latest" else 0)

    def assignment(self) -> list[int]:
        return [0] if self.assigned else []

    def resubscribe(self) -> None:
        self.resubscribed += 1
        self.assigned = False

    def commit(self, next_offsets: Mapping[int, int], *, wait: bool = False) -> None:
        self.committed.update(next_offsets)

    def lag(self) -> dict[int, int]:
        return {0: len(self.records) - self.position} if self.assigned else {}

    def exhausted(self) -> bool:
        return self.position >= len(self.records)

    def close(self) -> None:
        self.closed = True


class ListSink:
    """Collects what would have been produced: (topic, value, key, headers) tuples."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]] = []
        self.flushes = 0

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self.sent.append((topic, value, key, list(headers or [])))

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1
