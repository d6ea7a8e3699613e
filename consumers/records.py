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


# A source consuming a labels topic next to the events topic numbers the partitions of both with
# one int, so that offsets stay one `dict[int, int]` (and older checkpoints load as they are):
# partition p of the events topic is p, partition p of the labels topic is ~p (-1 - p).


def labels_slot(partition: int) -> int:
    """The source's number for partition `partition` of the labels topic."""
    return ~partition


def is_labels_slot(slot: int) -> bool:
    return slot < 0


def events_partition(slot: int) -> int:
    """The events partition a slot belongs with: p for p, and for the labels partition ~p."""
    return ~slot if slot < 0 else slot
