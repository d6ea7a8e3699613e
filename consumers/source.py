"""The `Source` protocol: everything the service asks of the topic it consumes.

`consumers.kafka_io.KafkaSource` is the one that reads Kafka; tests use an in-memory one that
implements the same methods. Partitions are those of the events topic, and, when a source also
consumes a labels topic (`labels_topic`), those of the labels topic numbered `~p`
(`consumers.records.labels_slot`). A source calls its rebalance callbacks (`OnPartitions`) from
inside `poll`, with itself and the partitions concerned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from consumers.records import Record


class Source(Protocol):
    topic: str
    labels_topic: str | None  # also consumed, co-partitioned with `topic`; None: not consumed

    def poll(self, timeout_ms: int = ...) -> list[Record]:
        """The next batch of records (possibly none), in offset order within each partition."""
        ...

    def seek(self, partition: int, offset: int) -> None:
        """Read `partition` from `offset` next; raises `NotAssigned` if it is not assigned."""
        ...

    def seek_to_start(self, partition: int, reset: str) -> None:
        """Position a partition with no known offset: `reset` is "earliest" or "latest"."""
        ...

    def assignment(self) -> list[int]:
        """The partitions assigned to this consumer now, sorted."""
        ...

    def resubscribe(self) -> None:
        """Join the consumer group anew."""
        ...

    def commit(self, next_offsets: Mapping[int, int], *, wait: bool = ...) -> None:
        """Record, per partition, the offset of the next record to read (for lag monitoring)."""
        ...

    def lag(self) -> dict[int, int]:
        """Per assigned partition: records behind the end of the partition, where known."""
        ...

    def behind(self, partition: int) -> bool:
        """Whether records of `partition` remain to be polled (or that is not known yet), as
        far as the last fetch knows: cheap, and may be stale."""
        ...

    def caught_up(self, partition: int) -> bool:
        """Whether every record written to `partition` so far has been polled, asked of the
        broker now (False while that cannot be known): a network round trip."""
        ...

    def pause(self, partition: int) -> None:
        """Poll nothing of `partition` until `resume` (then seek it where it is to be read from
        again); a rebalance resumes it."""
        ...

    def resume(self, partition: int) -> None: ...

    def close(self) -> None: ...


OnPartitions = Callable[[Source, list[int]], None]
"""A rebalance callback: `(source, partitions)`."""
