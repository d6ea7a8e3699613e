"""The one module that imports the Kafka client (kafka-python).

Everything else in driftline talks to Kafka through the small classes and functions here, so the
client could be swapped in one place. The client's errors do not leave this module: they are
raised again as `consumers.errors` (`BrokerUnavailable`, `DeliveryFailed`, `NotAssigned`), with
the topic and partition they concern.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    TopicPartition,
)
from kafka.admin import NewTopic
from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    TopicAlreadyExistsError,
)
from kafka.future import Future

from consumers.errors import BrokerUnavailable, DeliveryFailed, NotAssigned
from consumers.records import Record
from consumers.source import OnPartitions

log = logging.getLogger(__name__)

__all__ = [
    "KafkaSink",
    "KafkaSource",
    "broker_ready",
    "create_topic",
    "topic_partitions",
]


@contextmanager
def _broker(what: str) -> Iterator[None]:
    """Raise the client's errors inside the block as `BrokerUnavailable`, saying what failed."""
    try:
        yield
    except KafkaError as exc:
        raise BrokerUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


def broker_ready(bootstrap: str, timeout: float = 3.0) -> bool:
    """True when a broker at `bootstrap` answers a metadata request."""
    # A refused TCP connection answers at once; the client alone would retry for 30 s.
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout).close()
    except (OSError, ValueError):
        return False
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(timeout * 1000),
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> bool:
    """Create `name` with `partitions` partitions; False if it existed already."""
    with _broker(f"create topic {name} at {bootstrap}"):
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
            return True
        except TopicAlreadyExistsError:
            return False
        finally:
            admin.close()


def topic_partitions(bootstrap: str, topic: str) -> list[int]:
    """The partitions of `topic`, or [] while it does not exist."""
    with _broker(f"describe topic {topic} at {bootstrap}"):
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            [described] = admin.describe_topics([topic])
        finally:
            admin.close()
    if described.get("error_code", 0) != 0:
        return []
    return sorted(
        p["partition_index"] if isinstance(p, dict) else int(p) for p in described["partitions"]
    )


class KafkaSource:
    """A consumer in a consumer group that yields `Record`s and commits only when told to.

    Auto-commit is off. Where each assigned partition starts is decided by `on_assign`
    (driftline seeks to its checkpointed offsets); `on_revoke` runs before partitions go, so the
    state can be checkpointed first; `on_lost` when they were taken away already (this member
    was evicted from the group), and defaults to `on_revoke`. All run inside `poll`, between
    batches, with this source and the partitions of its topic concerned.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group_id: str,
        auto_offset_reset: str = "earliest",
        max_poll_records: int = 500,
        *,
        group_instance_id: str | None = None,
        session_timeout_ms: int = 10_000,
        on_assign: OnPartitions | None = None,
        on_revoke: OnPartitions | None = None,
        on_lost: OnPartitions | None = None,
    ) -> None:
        self.topic = topic
        options: dict[str, Any] = {}
        if group_instance_id:
            options["group_instance_id"] = group_instance_id
        with _broker(f"consume {topic} from {bootstrap}"):
            self._consumer = KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=group_id,
                auto_offset_reset=auto_offset_reset,
                enable_auto_commit=False,
                max_poll_records=max_poll_records,
                session_timeout_ms=session_timeout_ms,
                heartbeat_interval_ms=max(1000, session_timeout_ms // 4),
                **options,
            )
        source = self
        on_lost = on_lost or on_revoke

        def call(callback: OnPartitions | None, partitions: Any) -> None:
            mine = sorted(tp.partition for tp in partitions if tp.topic == source.topic)
            if mine and callback is not None:
                callback(source, mine)

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                call(on_revoke, revoked)

            def on_partitions_assigned(self, assigned: Any) -> None:
                call(on_assign, assigned)

            def on_partitions_lost(self, lost: Any) -> None:
                call(on_lost, lost)

        self._listener = Listener()
        with _broker(f"subscribe to {topic}"):
            self._consumer.subscribe([topic], listener=self._listener)

    def resubscribe(self) -> None:
        """Join the group anew (a join that raced the topic's metadata can end unassigned)."""
        with _broker(f"resubscribe to {self.topic}"):
            self._consumer.unsubscribe()
            self._consumer.subscribe([self.topic], listener=self._listener)

    def poll(self, timeout_ms: int = 500) -> list[Record]:
        """The next batch of records, in offset order within each partition.

        kafka-python's ConsumerRecord has every field of `Record`; it is handed on as it is.
        """
        with _broker(f"poll {self.topic}"):
            batches = self._consumer.poll(timeout_ms=timeout_ms)
        if len(batches) == 1:
            return next(iter(batches.values()))
        out: list[Record] = []
        for messages in batches.values():
            out.extend(messages)
        return out

    def seek(self, partition: int, offset: int) -> None:
        where = f"{self.topic}[{partition}]@{offset}"
        try:
            with _broker(f"seek {where}"):
                self._consumer.seek(TopicPartition(self.topic, partition), offset)
        except ValueError as exc:  # the client's word for "not assigned"
            raise NotAssigned(f"cannot seek {where}: {exc}") from exc

    def seek_to_start(self, partition: int, reset: str) -> None:
        """Position a partition with no checkpointed offset: "earliest" or "latest"."""
        tp = TopicPartition(self.topic, partition)
        try:
            with _broker(f"seek {self.topic}[{partition}] to the {reset} offset"):
                if reset == "latest":
                    self._consumer.seek_to_end(tp)
                else:
                    self._consumer.seek_to_beginning(tp)
        except ValueError as exc:
            raise NotAssigned(f"cannot seek {self.topic}[{partition}]: {exc}") from exc

    def assignment(self) -> list[int]:
        return sorted(tp.partition for tp in self._consumer.assignment())

    def commit(self, next_offsets: Mapping[int, int], *, wait: bool = False) -> None:
        """Commit, per partition, the offset of the next event to read (for lag monitoring)."""
        assigned = {tp.partition for tp in self._consumer.assignment()}
        offsets: dict[Any, Any] = {
            TopicPartition(self.topic, p): _offset_and_metadata(o)
            for p, o in next_offsets.items()
            if p in assigned
        }
        if not offsets:
            return
        with _broker(f"commit {self.topic} offsets {dict(next_offsets)}"):
            if wait:  # bounded: a shutdown must not wait for a broker that is away
                self._consumer.commit(offsets, timeout_ms=5000)
            else:
                self._consumer.commit_async(offsets)

    def lag(self) -> dict[int, int]:
        """Per assigned partition: the high-water mark minus our position, where known."""
        out: dict[int, int] = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = self._consumer.position(tp, timeout_ms=0)
            except (KafkaError, TypeError):
                continue
            if position is not None:
                out[tp.partition] = max(0, high - position)
        return out

    def close(self, timeout: float = 5.0) -> None:
        # Bounded: kafka-python would otherwise wait up to request_timeout_ms (5 minutes) to
        # leave the group when the coordinator does not answer.
        with _broker(f"close the consumer of {self.topic}"):
            self._consumer.close(autocommit=False, timeout_ms=int(timeout * 1000))


def _offset_and_metadata(offset: int) -> Any:
    from kafka.structs import OffsetAndMetadata

    # kafka-python 2.1+ added leader_epoch to the tuple; -1 means unknown.
    try:
        return OffsetAndMetadata(offset, "", -1)
    except TypeError:  # pragma: no cover - older kafka-python
        return OffsetAndMetadata(offset, "")


class KafkaSink:
    """A producer of raw bytes, with optional key and headers.

    `send` returns kafka-python's future for the record (`DeadLetters` checks them after a
    flush); a record too large for the producer comes back as a failed future rather than an
    exception, like every other refusal. `acks="all"`: a record counts as written once every
    in-sync replica has it. Not idempotent unless transactional (see below), so that a refused
    record does not fail every later one. `max_request_size` is 1 MiB (the client's and the
    broker's default), above every dead letter (`consumers.deadletter.DEAD_LETTER_MAX_BYTES`).
    """

    def __init__(self, bootstrap: str, **options: Any) -> None:
        from consumers.deadletter import PRODUCER_MAX_REQUEST_SIZE

        options.setdefault("linger_ms", 5)
        options.setdefault("acks", "all")
        options.setdefault("max_request_size", PRODUCER_MAX_REQUEST_SIZE)
        if "transactional_id" not in options:
            # kafka-python 3's idempotent producer (its default) takes a refusal of one record
            # (MessageSizeTooLargeError) as fatal and fails every later send: one dead letter too
            # large for its topic would fail all the others. Dead letters are at-least-once.
            options.setdefault("enable_idempotence", False)
        with _broker(f"produce to {bootstrap}"):
            self._producer = KafkaProducer(bootstrap_servers=bootstrap, **options)

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Iterable[tuple[str, bytes]] | None = None,
    ) -> Any:
        try:
            return self._producer.send(topic, value=value, key=key, headers=list(headers or []))
        except MessageSizeTooLargeError as exc:  # a refusal like any other: a failed future
            return Future().failure(exc)
        except KafkaError as exc:  # e.g. no metadata for the topic within max_block_ms
            raise DeliveryFailed(f"send to {topic}: {type(exc).__name__}: {exc}") from exc

    def flush(self, timeout: float | None = None) -> None:
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as exc:
            raise DeliveryFailed(f"flush: {type(exc).__name__}: {exc}") from exc

    def close(self, timeout: float | None = None) -> None:
        """Close the producer, waiting at most `timeout` seconds (None: until every record is
        sent or expired) for records still unsent; past it, they are dropped."""
        try:
            self._producer.close(timeout=timeout)
        except KafkaTimeoutError:
            # kafka-python raises instead of closing when records are still unsent after
            # `timeout`: drop them (their delivery was never confirmed, so no checkpoint covers
            # them) and stop its sender thread, then close for good.
            log.warning("closing the producer: records unsent after %s s are dropped", timeout)
            sender = getattr(self._producer, "_sender", None)
            if sender is not None:
                sender.force_close()
                sender.join(1.0)
            with _broker("close the producer"):
                self._producer.close(timeout=0)
        except KafkaError as exc:
            raise BrokerUnavailable(f"close the producer: {type(exc).__name__}: {exc}") from exc
