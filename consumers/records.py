"""The plain record a source hands on: bytes plus where they came from."""

from __future__ import annotations

from typing import NamedTuple


class Record(NamedTuple):
    """One message as read from a topic, before decoding.

    The Kafka client's own record tuples have these same fields (`timestamp` in milliseconds),
    so a source may hand them on as they are, without a copy per message.
    """

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp: int = -1
    key: bytes | None = None  # the message key (outputs about this event are keyed alike)


def where(record: Record) -> str:
    """Where a message sits, for error messages and logs: topic[partition]@offset."""
    return f"{record.topic}[{record.partition}]@{record.offset}"
