"""The dead-letter topic: every rejected message, with why and where it came from."""

from __future__ import annotations

import time
from typing import Protocol

from consumers.records import Record
from consumers.wire import DEFAULT_MAX_BYTES, Rejection


class Sink(Protocol):
    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None: ...

    def flush(self, timeout: float | None = None) -> None: ...


def dead_letter_headers(record: Record, rejection: Rejection) -> list[tuple[str, bytes]]:
    """Kafka headers naming the reason and the source topic, partition and offset."""
    return [
        ("driftline.reason", rejection.reason.encode()),
        ("driftline.detail", rejection.detail.encode("utf-8", "replace")),
        ("driftline.source.topic", record.topic.encode()),
        ("driftline.source.partition", str(record.partition).encode()),
        ("driftline.source.offset", str(record.offset).encode()),
        ("driftline.time", str(int(time.time() * 1000)).encode()),
    ]


class DeadLetters:
    """Produces rejected messages, original bytes cut to `max_bytes`, to one topic."""

    def __init__(self, sink: Sink, topic: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.sink = sink
        self.topic = topic
        self.max_bytes = max_bytes

    def send(self, record: Record, rejection: Rejection) -> None:
        value = (record.value or b"")[: self.max_bytes]
        self.sink.send(self.topic, value, headers=dead_letter_headers(record, rejection))

    def flush(self) -> None:
        self.sink.flush()
