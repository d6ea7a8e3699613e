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
        self.labels_topic: str | None = None
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

    def behind(self, partition: int) -> bool:
        return self.position < len(self.records)

    def caught_up(self, partition: int) -> bool:
        return not self.behind(partition)

    def pause(self, partition: int) -> None:
        pass

    def resume(self, partition: int) -> None:
        pass

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


class PartitionedSource:
    """A topic of several partitions backed by lists; every partition is assigned at the first
    poll, and each poll hands out up to `batch` records of each partition in turn."""

    def __init__(
        self,
        topic: str,
        partitions: Mapping[int, Iterable[bytes | None]],
        batch: int = 50,
        *,
        on_assign: OnPartitions | None = None,
        on_revoke: OnPartitions | None = None,
        labels: Mapping[int, Iterable[bytes | None]] | None = None,
        labels_topic: str | None = None,
        timestamps: Mapping[int, list[int]] | None = None,
    ) -> None:
        self.topic = topic
        self.records = {
            p: [Record(topic, p, i, v, 0, f"k{p}-{i}".encode()) for i, v in enumerate(values)]
            for p, values in partitions.items()
        }
        # A labels topic's partition p is the source's ~p (consumers.records.labels_slot).
        self.labels_topic = labels_topic if labels is not None else None
        for p, values in (labels or {}).items():
            self.records[~p] = [Record(labels_topic or f"{topic}.labels", p, i, v, 0)
                                for i, v in enumerate(values)]
        for p, ts in (timestamps or {}).items():  # Kafka timestamps (ms), else 0
            self.records[p] = [r._replace(timestamp=t) for r, t in zip(self.records[p], ts,
                                                                        strict=True)]
        self.paused: set[int] = set()
        self.batch = batch
        self.positions = dict.fromkeys(self.records, 0)
        self.assigned: list[int] = []
        self.committed_offsets: dict[int, int] = {}
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self.closed = False

    def poll(self, timeout_ms: int = 0) -> list[Record]:
        if not self.assigned:
            self.assigned = sorted(self.records)
            if self.on_assign is not None:
                self.on_assign(self, list(self.assigned))
        out: list[Record] = []
        for p in self.assigned:
            if p in self.paused:
                continue
            got = self.records[p][self.positions[p] : self.positions[p] + self.batch]
            self.positions[p] += len(got)
            out.extend(got)
        return out

    def revoke(self) -> None:
        if self.on_revoke is not None:
            self.on_revoke(self, list(self.assigned))
        self.assigned = []
        self.paused = set()

    def seek(self, partition: int, offset: int) -> None:
        if partition not in self.assigned:
            raise NotAssigned(f"cannot seek {self.topic}[{partition}]@{offset}: not assigned")
        self.positions[partition] = offset

    def seek_to_start(self, partition: int, reset: str) -> None:
        self.seek(partition, len(self.records[partition]) if reset == "latest" else 0)

    def assignment(self) -> list[int]:
        return list(self.assigned)

    def resubscribe(self) -> None:
        self.assigned = []

    def commit(self, next_offsets: Mapping[int, int], *, wait: bool = False) -> None:
        self.committed_offsets.update(next_offsets)

    def committed(self, partitions: Iterable[int]) -> dict[int, int | None]:
        return {p: self.committed_offsets.get(p) for p in partitions}

    def group_metadata(self) -> str:
        return "generation-1"

    def lag(self) -> dict[int, int]:
        return {p: len(self.records[p]) - self.positions[p] for p in self.assigned}

    def behind(self, partition: int) -> bool:
        return self.positions[partition] < len(self.records[partition])

    def caught_up(self, partition: int) -> bool:
        return self.positions[partition] >= len(self.records[partition])

    def pause(self, partition: int) -> None:
        self.paused.add(partition)

    def resume(self, partition: int) -> None:
        self.paused.discard(partition)

    def exhausted(self) -> bool:
        return all(self.positions[p] >= len(r) for p, r in self.records.items())

    def close(self) -> None:
        self.closed = True
