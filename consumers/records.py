"""The plain record a source hands on: bytes plus where they came from."""

from __future__ import annotations

from typing import NamedTuple


class Record(NamedTuple):
    """One message as read from a topic, before decoding."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp_ms: int = -1

    def where(self) -> str:
        """Where the message sits, for error messages and logs."""
        return f"{self.topic}[{self.partition}]@{self.offset}"
