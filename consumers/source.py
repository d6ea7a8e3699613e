"""The `Source` protocol: everything the service asks of the topic it consumes.

`consumers.kafka_io.KafkaSource` is the one that reads Kafka; tests use an in-memory one that
implements the same methods. Partitions are those of the one subscribed topic. A source calls its
rebalance callbacks (`OnPartitions`) from inside `poll`, with itself and the partitions concerned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from consumers.records import Record


class Source(Protocol):
    topic: str

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

    def close(self) -> None: ...


OnPartitions = Callable[[Source, list[int]], None]
"""A rebalance callback: `(source, partitions)`."""
