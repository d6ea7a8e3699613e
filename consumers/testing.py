"""In-memory stand-ins for a topic, so that a pipeline test needs no broker.

    source = ListSource("events", [b'{"x": {"a": 1}, "y": true}'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from consumers.records import Record


class ListSource:
    """A one-partition topic backed by a list; polls return up to `batch` records."""

    def __init__(self, topic: str, values: Iterable[bytes | None], batch: int = 500) -> None:
        self.topic = topic
        self.records = [Record(topic, 0, i, v, 0) for i, v in enumerate(values)]
        self.batch = batch
        self.position = 0
        self.committed: dict[int, int] = {}
        self.closed = False

    def poll(self, timeout_ms: int = 0) -> list[Record]:
        out = self.records[self.position : self.position + self.batch]
        self.position += len(out)
        return out

    def commit(self, next_offsets: Mapping[int, int], *, wait: bool = False) -> None:
        self.committed.update(next_offsets)

    def lag(self) -> dict[int, int]:
        return {0: len(self.records) - self.position}

    def exhausted(self) -> bool:
        return self.position >= len(self.records)

    def close(self) -> None:
        self.closed = True


class ListSink:
    """Collects what would have been produced: (topic, value, key, headers) tuples."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]] = []

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self.sent.append((topic, value, key, list(headers or [])))

    def flush(self, timeout: float | None = None) -> None:
        pass
