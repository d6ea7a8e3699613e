"""The one module that imports the Kafka client (kafka-python).

Everything else in driftline talks to Kafka through the small classes and functions here, so the
client could be swapped in one place. The client's errors do not leave this module: they are
raised again as `consumers.errors` (`BrokerUnavailable`, `DeliveryFailed`, `NotAssigned`), with
the topic and partition they concern.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    TopicPartition,
)
from kafka.admin import NewTopic
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    TopicAlreadyExistsError,
)
from kafka.future import Future

from consumers.assignor import JoinWatch, OneOwnerAssignor
from consumers.errors import BrokerUnavailable, DeliveryFailed, NotAssigned
from consumers.records import Record, labels_slot
from consumers.source import OnPartitions

log = logging.getLogger(__name__)

__all__ = [
    "Cluster",
    "KafkaSink",
    "KafkaSource",
    "PartitionReader",
    "TransactionalSink",
    "broker_problem",
    "broker_ready",
    "create_topic",
    "create_topics",
    "topic_partitions",
]


@dataclass(frozen=True)
class Cluster:
    """Where the brokers are and how to reach them: a plain connection, TLS (`SSL`), SASL
    authentication over plain TCP or TLS (`SASL_PLAINTEXT`, `SASL_SSL`; mechanisms `PLAIN`,
    `SCRAM-SHA-256`, `SCRAM-SHA-512`). Every function and class here takes one where it takes
    a bootstrap string; a string is a plain connection. The password is left out of `repr`."""

    bootstrap: str
    protocol: str = "PLAINTEXT"
    mechanism: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    cafile: str = ""  # "" with TLS: the system's certificate authorities
    certfile: str = ""  # a client certificate, for brokers that ask for one
    keyfile: str = ""
    check_hostname: bool = True

    def __str__(self) -> str:
        return self.bootstrap


Brokers = str | Cluster


def _connection(brokers: Brokers) -> dict[str, Any]:
    """kafka-python's options for reaching `brokers`."""
    if isinstance(brokers, str):
        return {"bootstrap_servers": brokers}
    options: dict[str, Any] = {"bootstrap_servers": brokers.bootstrap,
                               "security_protocol": brokers.protocol}
    if brokers.protocol.startswith("SASL_"):
        options.update(sasl_mechanism=brokers.mechanism, sasl_plain_username=brokers.username,
                       sasl_plain_password=brokers.password)
    if brokers.protocol.endswith("SSL"):
        options["ssl_check_hostname"] = brokers.check_hostname
        for key, value in (("ssl_cafile", brokers.cafile), ("ssl_certfile", brokers.certfile),
                           ("ssl_keyfile", brokers.keyfile)):
            if value:
                options[key] = value
    return options


# The client fetches a partition again only once it has handed on every record of the last
# fetch, so each fetch costs a round trip during which nothing is processed. 4 MiB instead of
# the client's 1 MiB: a quarter as many fetches on a backlog (Elec2, one model, through the
# broker: 0.92 -> 0.96 of the hand-written loop's rate; 16 MiB did no better). A fetch's
# records are held until handed on: at most this much per assigned partition.
PARTITION_FETCH_BYTES = 4 * 1024 * 1024

# Records a poll: about this much of the caller's work, measured on its last batch, within
# [MIN_POLL_RECORDS, max_poll_records]. A poll that empties the client's buffer sends the next
# fetch before it returns, so that fetch arrives while the caller works on a large batch; with
# small polls the caller waits for it (Elec2, one model, through the broker: 500 records a poll
# 0.97 of the hand-written loop's rate, 10,000-50,000 records 1.05). The bound in time keeps a
# slow model set's batches short: SIGTERM and a rebalance wait for the batch in hand.
BATCH_SECONDS = 0.5
MIN_POLL_RECORDS = 500


def poll_records(handed: int, seconds: float, cap: int) -> int:
    """Records for the next poll: `BATCH_SECONDS` of the caller's work at the rate it processed
    the last batch (`handed` records in `seconds`), within [MIN_POLL_RECORDS, cap]."""
    rate = handed / max(seconds, 1e-6)
    return max(min(MIN_POLL_RECORDS, cap), min(cap, int(rate * BATCH_SECONDS)))


# How long `broker_problem` lets the client try to log in with SASL (see there).
SASL_BOOTSTRAP_SECONDS = 10.0

# A leader applies its join milliseconds after assigning; past this, the client dropped it.
# Doubled after each join anew until one is applied: a slow group must not rebalance forever.
JOIN_STALLED_AFTER = 2.0


@contextmanager
def _broker(what: str) -> Iterator[None]:
    """Raise the client's errors inside the block as `BrokerUnavailable`, saying what failed
    (and why the broker refused the connection, which the client tells its log only)."""
    mark = _REFUSALS.seen
    try:
        yield
    except KafkaError as exc:
        reason = _REFUSALS.since(mark)
        refused = f"; {reason}" if reason else ""
        raise BrokerUnavailable(f"{what}: {type(exc).__name__}: {exc}{refused}") from exc


def broker_ready(bootstrap: Brokers, timeout: float = 3.0) -> bool:
    """True when a broker at `bootstrap` answers a metadata request."""
    return broker_problem(bootstrap, timeout) is None


def broker_problem(bootstrap: Brokers, timeout: float = 3.0) -> str | None:
    """None when a broker at `bootstrap` answers a metadata request, else why it does not
    ("nothing listens ..." when no TCP connection could be made)."""
    # A refused TCP connection answers at once; the client alone would retry for 30 s.
    host, _, port = str(bootstrap).split(",")[0].rpartition(":")
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout).close()
    except (OSError, ValueError) as exc:
        return f"nothing listens at {host}:{port} ({exc})"
    sasl = isinstance(bootstrap, Cluster) and bootstrap.protocol.startswith("SASL_")
    mark = _REFUSALS.seen
    try:
        admin = KafkaAdminClient(
            **_connection(bootstrap),
            request_timeout_ms=int(timeout * 1000),
            # The client reads a refused login's answer on some tries only (on others it sees
            # the connection closed first): with SASL, give it tries enough to see one.
            bootstrap_timeout_ms=int(max(timeout, SASL_BOOTSTRAP_SECONDS if sasl else 0) * 1000),
        )
    except (KafkaError, OSError, ValueError) as exc:
        reason = _REFUSALS.since(mark)
        if reason:
            return reason
        hint = (" (a refused SASL login can show as this too: check sasl_username, "
                "sasl_password and sasl_mechanism)") if sasl else ""
        return f"{type(exc).__name__}: {exc}{hint}"
    try:
        admin.list_topics()
        return None
    except (KafkaError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        admin.close()


class _Refusals(logging.Handler):
    """Watches the client's log for a refused login or a failed TLS handshake: kafka-python
    takes either for an unreachable broker ("Unable to bootstrap") and only logs the cause.
    One handler for the process, on the client's logger, so that the hot path (`_broker`
    around each poll) only notes `seen` and reads the cause when a call has failed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen = 0  # causes seen so far
        self.reason = ""  # the last one

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "AuthenticationFailed" in message:
            detail = message.rpartition("Error: ")[2].rstrip(")")
            self.reason = f"the broker refused the login: {detail}"
        elif "Handshake failed: " in message:
            self.reason = f"the TLS handshake failed: {message.partition('Handshake failed: ')[2]}"
        else:
            return
        self.seen += 1

    def since(self, mark: int) -> str:
        """The last cause, if one was seen after `seen` was `mark`; else ""."""
        return self.reason if self.seen > mark else ""


_REFUSALS = _Refusals()
logging.getLogger("kafka").addHandler(_REFUSALS)


def create_topic(bootstrap: Brokers, name: str, partitions: int = 1,
                 configs: Mapping[str, str] | None = None) -> bool:
    """Create `name` with `partitions` partitions (and topic `configs`, e.g. cleanup.policy);
    False if it existed already."""
    with _broker(f"create topic {name} at {bootstrap}"):
        admin = KafkaAdminClient(**_connection(bootstrap))
        try:
            admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                          topic_configs=dict(configs or {}))])
            return True
        except TopicAlreadyExistsError:
            return False
        finally:
            admin.close()


def create_topics(bootstrap: Brokers,
                  topics: Iterable[tuple[str, int, Mapping[str, str]]]) -> list[str]:
    """Create each (name, partitions, configs) that does not exist yet, with one admin client
    (each costs a connection and a metadata round trip); the names created."""
    created = []
    with _broker(f"create topics at {bootstrap}"):
        admin = KafkaAdminClient(**_connection(bootstrap))
        try:
            for name, partitions, configs in topics:
                try:
                    admin.create_topics([NewTopic(name, num_partitions=partitions,
                                                  replication_factor=1,
                                                  topic_configs=dict(configs))])
                    created.append(name)
                except TopicAlreadyExistsError:
                    pass
        finally:
            admin.close()
    return created


def topic_partitions(bootstrap: Brokers, topic: str) -> list[int]:
    """The partitions of `topic`, or [] while it does not exist."""
    with _broker(f"describe topic {topic} at {bootstrap}"):
        admin = KafkaAdminClient(**_connection(bootstrap))
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

    With `labels_topic`, that topic is subscribed in the same group; its partition p is the
    source's partition ~p (`consumers.records.labels_slot`). The range assignor then hands
    partition p of both topics to the same member (they must have as many partitions).
    """

    def __init__(
        self,
        bootstrap: Brokers,
        topic: str,
        group_id: str,
        auto_offset_reset: str = "earliest",
        max_poll_records: int = 10_000,
        *,
        group_instance_id: str | None = None,
        session_timeout_ms: int = 10_000,
        on_assign: OnPartitions | None = None,
        on_revoke: OnPartitions | None = None,
        on_lost: OnPartitions | None = None,
        read_committed: bool = True,
        one_owner: bool = False,
        labels_topic: str | None = None,
    ) -> None:
        self.topic = topic
        self.labels_topic = labels_topic
        self._topics = [topic] if labels_topic is None else [topic, labels_topic]
        # Held back by `pause`: their records are dropped from polls. (The client's own pause
        # loses a partition for good once it is resumed after records were fetched for it.)
        self._paused: set[Any] = set()
        self._max_records = max_poll_records
        self._records = min(MIN_POLL_RECORDS, max_poll_records)  # the next poll's
        self._handed = 0  # records the last poll handed on, and when
        self._handed_at = 0.0
        options: dict[str, Any] = {}
        if group_instance_id:
            options["group_instance_id"] = group_instance_id
        # Only what committed transactions wrote: an upstream producer's aborted events never
        # happened. A producer without transactions is read as by default (its records are
        # committed as they are written).
        if read_committed:
            options["isolation_level"] = "read_committed"
        if one_owner:  # global scope: every partition to one member, the others stand by
            strategies: list[Any] = [OneOwnerAssignor()]
        elif labels_topic is not None:
            # Partition p of each topic to the same member: a label joins its event's partition.
            strategies = [RangePartitionAssignor()]
        else:  # the client's default, read from the client: an upgrade that changes it is followed
            strategies = [strategy() for strategy in
                          KafkaConsumer.DEFAULT_CONFIG["partition_assignment_strategy"]]
        self._watches = [JoinWatch(strategy) for strategy in strategies]
        self._stalled_after = JOIN_STALLED_AFTER
        options["partition_assignment_strategy"] = self._watches
        with _broker(f"consume {topic} from {bootstrap}"):
            self._consumer = KafkaConsumer(
                **_connection(bootstrap),
                group_id=group_id,
                auto_offset_reset=auto_offset_reset,
                enable_auto_commit=False,
                max_poll_records=max_poll_records,
                max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
                session_timeout_ms=session_timeout_ms,
                heartbeat_interval_ms=max(1000, session_timeout_ms // 4),
                **options,
            )
        source = self
        on_lost = on_lost or on_revoke

        def call(callback: OnPartitions | None, partitions: Any) -> None:
            source._paused.difference_update(partitions)
            mine = sorted(source._slot(tp) for tp in partitions if tp.topic in source._topics)
            if mine and callback is not None:
                callback(source, mine)

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                call(on_revoke, revoked)

            def on_partitions_assigned(self, assigned: Any) -> None:
                source._stalled_after = JOIN_STALLED_AFTER  # a join applied
                call(on_assign, assigned)

            def on_partitions_lost(self, lost: Any) -> None:
                call(on_lost, lost)

        self._listener = Listener()
        with _broker(f"subscribe to {self._topics}"):
            self._consumer.subscribe(self._topics, listener=self._listener)

    def _slot(self, tp: Any) -> int:
        return labels_slot(tp.partition) if tp.topic == self.labels_topic else tp.partition

    def _tp(self, slot: int) -> Any:
        if slot < 0:
            return TopicPartition(self.labels_topic, ~slot)
        return TopicPartition(self.topic, slot)

    def _where(self, slot: int) -> str:
        tp = self._tp(slot)
        return f"{tp.topic}[{tp.partition}]"

    def resubscribe(self) -> None:
        """Join the group anew (a join that raced the topic's metadata can end unassigned)."""
        for watch in self._watches:
            watch.assigned_at = None
        with _broker(f"resubscribe to {self._topics}"):
            self._consumer.unsubscribe()
            self._consumer.subscribe(self._topics, listener=self._listener)

    def poll(self, timeout_ms: int = 500) -> list[Record]:
        """The next batch of records, in offset order within each partition.

        kafka-python's ConsumerRecord has every field of `Record`; it is handed on as it is.
        At most as many as the caller processed in `BATCH_SECONDS` last time (see there).
        """
        if self._handed:  # else (nothing handed on last time) as large as the last poll
            self._records = poll_records(self._handed, time.perf_counter() - self._handed_at,
                                         self._max_records)
        with _broker(f"poll {self.topic}"):
            # On a backlog (the last poll handed on MIN_POLL_RECORDS or more, or its cap),
            # first without waiting: kafka-python 3.0 sleeps `retry_backoff_ms` (100 ms) in a
            # poll that finds its buffer empty while the fetch it waits for completes (it then
            # holds no fetch in flight to wait on), though the records are there; a poll that
            # does not wait does not sleep, and the next one finds them. On a backlog that race
            # came about at one fetch in two or three (Elec2 through the broker: 2-4 sleeps of
            # 100 ms in 4 s). Not when caught up: there the extra poll delayed each event (p50
            # latency at 500 events/s 2 -> 27 ms).
            batches = {}
            if self._handed >= min(MIN_POLL_RECORDS, self._max_records):
                batches = self._consumer.poll(timeout_ms=0, max_records=self._records)
            if not batches:
                batches = self._consumer.poll(timeout_ms=timeout_ms, max_records=self._records)
        if any(watch.stalled(self._stalled_after) for watch in self._watches):
            log.warning("the client did not complete its join of the group for %s in %.0f s: "
                        "joining anew", self._topics, self._stalled_after)
            self._stalled_after *= 2
            self.resubscribe()
        if self._paused:
            batches = {tp: b for tp, b in batches.items() if tp not in self._paused}
        if len(batches) == 1:
            out = next(iter(batches.values()))
        else:
            out = []
            for messages in batches.values():
                out.extend(messages)
        self._handed, self._handed_at = len(out), time.perf_counter()
        return out

    def seek(self, partition: int, offset: int) -> None:
        where = f"{self._where(partition)}@{offset}"
        try:
            with _broker(f"seek {where}"):
                self._consumer.seek(self._tp(partition), offset)
        except ValueError as exc:  # the client's word for "not assigned"
            raise NotAssigned(f"cannot seek {where}: {exc}") from exc

    def seek_to_start(self, partition: int, reset: str) -> None:
        """Position a partition with no checkpointed offset: "earliest" or "latest"."""
        tp = self._tp(partition)
        try:
            with _broker(f"seek {self._where(partition)} to the {reset} offset"):
                if reset == "latest":
                    self._consumer.seek_to_end(tp)
                else:
                    self._consumer.seek_to_beginning(tp)
        except ValueError as exc:
            raise NotAssigned(f"cannot seek {self._where(partition)}: {exc}") from exc

    def assignment(self) -> list[int]:
        return sorted(self._slot(tp) for tp in self._consumer.assignment())

    def behind(self, partition: int) -> bool:
        """Whether records of `partition` remain to be polled (True while not known)."""
        tp = self._tp(partition)
        high = self._consumer.highwater(tp)
        if high is None or tp in self._paused:  # paused: its records were dropped, not read
            return True
        try:
            position = self._consumer.position(tp, timeout_ms=0)
        except (KafkaError, TypeError):
            return True
        return position is None or position < high

    def caught_up(self, partition: int) -> bool:
        """Whether every record written to `partition` so far has been polled: its end offset
        asked of the broker now (the last stable offset, read_committed), not the high
        watermark of the last fetch, which may predate records written since."""
        tp = self._tp(partition)
        if tp in self._paused:
            return False
        try:
            end = self._consumer.end_offsets([tp])[tp]
            position = self._consumer.position(tp, timeout_ms=0)
        except (KafkaError, TypeError, KeyError):
            return False
        return position is not None and position >= end

    def pause(self, partition: int) -> None:
        """Drop the records of `partition` from polls until `resume`, which must seek it back
        to where it is to be read from."""
        self._paused.add(self._tp(partition))

    def resume(self, partition: int) -> None:
        self._paused.discard(self._tp(partition))

    def commit(self, next_offsets: Mapping[int, int], *, wait: bool = False) -> None:
        """Commit, per partition, the offset of the next event to read (for lag monitoring)."""
        assigned = set(self.assignment())
        offsets: dict[Any, Any] = {
            self._tp(p): _offset_and_metadata(o)
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

    def committed(self, partitions: Iterable[int]) -> dict[int, int | None]:
        """The group's committed next offset of each partition (None: none committed)."""
        out: dict[int, int | None] = {}
        for partition in partitions:
            with _broker(f"read the committed offset of {self._where(partition)}"):
                out[partition] = self._consumer.committed(self._tp(partition), timeout_ms=30_000)
        return out

    def group_metadata(self) -> Any:
        """This member's group metadata (generation, member id), for a transaction's offsets:
        the broker refuses them from a member that is no longer in that generation."""
        return self._consumer.group_metadata()

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
                out[self._slot(tp)] = max(0, high - position)
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


def _warm(producer: Any, topics: Iterable[str]) -> None:
    """Fetch the producer's metadata of `topics`, so that the first record to each does not
    wait for it on the loop (a round trip to the broker, up to ~100 ms)."""
    for topic in topics:
        try:
            producer.partitions_for(topic)
        except KafkaError as exc:  # the first send will say what is wrong
            log.warning("no metadata for %s yet: %s: %s", topic, type(exc).__name__, exc)


class KafkaSink:
    """A producer of raw bytes, with optional key and headers.

    `send` returns kafka-python's future for the record (`DeadLetters` checks them after a
    flush); a record too large for the producer comes back as a failed future rather than an
    exception, like every other refusal. `acks="all"`: a record counts as written once every
    in-sync replica has it. Not idempotent unless transactional (see below), so that a refused
    record does not fail every later one. `max_request_size` is 1 MiB (the client's and the
    broker's default), above every dead letter (`consumers.deadletter.DEAD_LETTER_MAX_BYTES`).
    """

    def __init__(self, bootstrap: Brokers, **options: Any) -> None:
        from consumers.deadletter import PRODUCER_MAX_REQUEST_SIZE

        # One produce request per 50 ms rather than per 5: with one prediction per event, the
        # client's per-request work (its own thread, under the GIL) costs the loop more than
        # the 45 ms it waits. A checkpoint flushes first, so no record waits past it.
        options.setdefault("linger_ms", 50)
        options.setdefault("batch_size", 256 * 1024)
        options.setdefault("acks", "all")
        options.setdefault("max_request_size", PRODUCER_MAX_REQUEST_SIZE)
        if "transactional_id" not in options:
            # kafka-python 3's idempotent producer (its default) takes a refusal of one record
            # (MessageSizeTooLargeError) as fatal and fails every later send: one dead letter too
            # large for its topic would fail all the others. Dead letters are at-least-once.
            options.setdefault("enable_idempotence", False)
        with _broker(f"produce to {bootstrap}"):
            self._producer = KafkaProducer(**_connection(bootstrap), **options)

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

    def warm(self, topics: Iterable[str]) -> None:
        """Fetch the metadata of the topics this will write to (`_warm`)."""
        _warm(self._producer, topics)

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


class TransactionalSink:
    """A transactional producer (KIP-98/447): what it sends between two commits becomes visible
    to read_committed consumers together with the consumed offsets, or not at all.

    A transaction begins with the first send after a commit or an abort. `commit` adds the
    consumer group's offsets (fenced by its group metadata: a member evicted from the group
    cannot commit) and commits. `transactional_id` must be stable across restarts of the same
    instance: a restart then aborts what its predecessor left open.
    """

    def __init__(self, bootstrap: Brokers, transactional_id: str, *,
                 transaction_timeout_ms: int = 60_000, **options: Any) -> None:
        from consumers.deadletter import PRODUCER_MAX_REQUEST_SIZE

        options.setdefault("linger_ms", 5)
        options.setdefault("max_request_size", PRODUCER_MAX_REQUEST_SIZE)
        self._options = dict(options, **_connection(bootstrap),
                             transactional_id=transactional_id,
                             transaction_timeout_ms=transaction_timeout_ms)
        self.transactional_id = transactional_id
        self.in_transaction = False
        self._producer = self._start()

    def _start(self) -> Any:
        with _broker(f"start the transactional producer {self.transactional_id}"):
            producer = KafkaProducer(**self._options)
            try:
                producer.init_transactions()
            except BaseException:
                producer.close(timeout=1)
                raise
        return producer

    def warm(self, topics: Iterable[str]) -> None:
        """Fetch the metadata of the topics this will write to (`_warm`)."""
        _warm(self._producer, topics)

    def _begin(self) -> None:
        if not self.in_transaction:
            with _broker(f"begin a transaction of {self.transactional_id}"):
                self._producer.begin_transaction()
            self.in_transaction = True

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Iterable[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> Any:
        self._begin()
        try:
            return self._producer.send(topic, value=value, key=key,
                                       headers=list(headers or []), partition=partition)
        except MessageSizeTooLargeError as exc:
            return Future().failure(exc)
        except KafkaError as exc:
            raise DeliveryFailed(f"send to {topic} in a transaction of {self.transactional_id}: "
                                 f"{type(exc).__name__}: {exc}") from exc

    def flush(self, timeout: float | None = None) -> None:
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as exc:
            raise DeliveryFailed(f"flush: {type(exc).__name__}: {exc}") from exc

    def commit(self, topic: str, next_offsets: Mapping[int, int], group_metadata: Any,
               labels_topic: str | None = None) -> None:
        """Add the group's offsets of `topic` (and of `labels_topic`, its partitions numbered
        ~p: `consumers.records.labels_slot`) to the transaction, then commit it."""
        if not self.in_transaction and not next_offsets:
            return
        self._begin()
        offsets = {(TopicPartition(topic, p) if p >= 0 else TopicPartition(labels_topic, ~p)):
                   _offset_and_metadata(o) for p, o in next_offsets.items()}
        what = f"commit the transaction of {self.transactional_id} with {topic} offsets"
        try:
            if offsets:
                self._producer.send_offsets_to_transaction(offsets, group_metadata)
            self._producer.commit_transaction()
        except KafkaError as exc:  # fenced, timed out...: the caller aborts and rolls back
            raise DeliveryFailed(f"{what} {dict(next_offsets)}: {type(exc).__name__}: {exc}") \
                from exc
        self.in_transaction = False

    def abort(self) -> None:
        """Abort the open transaction; a producer that cannot abort (fenced, in a fatal state)
        is replaced by a new one with the same id, which aborts it."""
        if not self.in_transaction:
            return
        self.in_transaction = False
        try:
            self._producer.abort_transaction()
            return
        except KafkaError as exc:
            log.warning("aborting the transaction of %s: %s: %s; starting a new producer",
                        self.transactional_id, type(exc).__name__, exc)
        with suppress(KafkaError):
            self._producer.close(timeout=1)
        self._producer = self._start()

    def close(self, timeout: float | None = 5.0) -> None:
        with _broker(f"close the transactional producer {self.transactional_id}"):
            if self.in_transaction:
                self.abort()
            self._producer.close(timeout=timeout if timeout is not None else 5)


class PartitionReader:
    """Reads one partition of a topic from its start to its end, read_committed: the records
    of aborted or still open transactions are never seen."""

    def __init__(self, bootstrap: Brokers, topic: str) -> None:
        self.topic = topic
        with _broker(f"read {topic} from {bootstrap}"):
            self._consumer = KafkaConsumer(
                **_connection(bootstrap), group_id=None, enable_auto_commit=False,
                isolation_level="read_committed", auto_offset_reset="earliest",
            )

    def partitions(self) -> list[int]:
        with _broker(f"describe {self.topic}"):
            found = self._consumer.partitions_for_topic(self.topic)
        return sorted(found or [])

    def read(self, partition: int, timeout: float = 60.0) -> list[tuple[bytes | None, bytes,
                                                                        dict[str, bytes], int]]:
        """(key, value, headers, offset) of every committed record, in order."""
        import time

        tp = TopicPartition(self.topic, partition)
        out: list[tuple[bytes | None, bytes, dict[str, bytes], int]] = []
        where = f"{self.topic}[{partition}]"
        with _broker(f"read {where}"):
            self._consumer.assign([tp])
            self._consumer.seek_to_beginning(tp)
            end = self._consumer.end_offsets([tp])[tp]  # the last stable offset: read_committed
            deadline = time.monotonic() + timeout
            while self._consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise BrokerUnavailable(
                        f"read {where}: at offset {self._consumer.position(tp)} of {end} "
                        f"after {timeout:.0f} s")
                for record in self._consumer.poll(timeout_ms=500).get(tp, []):
                    if record.offset < end:
                        out.append((record.key, record.value or b"",
                                    dict(record.headers or []), record.offset))
        return out

    def close(self) -> None:
        with _broker(f"close the reader of {self.topic}"):
            self._consumer.close()
