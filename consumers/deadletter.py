"""The dead-letter topic: every rejected message, with why and where it came from.

A dead letter is the original value (cut if need be) with headers `driftline.reason`,
`driftline.detail`, `driftline.source.topic`, `driftline.source.partition`,
`driftline.source.offset` and `driftline.time` (and `driftline.value.bytes`, the original size,
when the value was cut). Every header is bounded and the value is cut so that the whole record
stays under `DEAD_LETTER_MAX_BYTES`, below a broker's default message limit (1 MiB), so the broker
accepts every dead letter of a default topic.

Delivery is checked: `flush` waits for every dead letter sent since the last flush and raises
`DeadLettersLost`, naming the source position of the first one the broker refused, so the caller
can refuse to move its checkpoint past it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from consumers.errors import DeliveryFailed
from consumers.records import Record, where
from consumers.wire import MAX_DETAIL_CHARS, Rejection, short

log = logging.getLogger("consumers.deadletter")

# A broker's default message.max.bytes (and a topic's max.message.bytes) is 1,048,588 bytes and
# a producer's max_request_size 1,048,576: a record of at most this much (value + headers) fits
# in either with a margin for the record and batch framing.
DEAD_LETTER_MAX_BYTES = 1_000_000
PRODUCER_MAX_REQUEST_SIZE = 1_048_576  # KafkaSink's max_request_size: above every dead letter
MAX_DETAIL_BYTES = 1000  # the driftline.detail header
_MAX_REASON_BYTES = 64
_MAX_TOPIC_BYTES = 255  # a Kafka topic name has at most 249 characters


class DeadLettersLost(DeliveryFailed):
    """One or more dead letters were not written to the dead-letter topic.

    `topic`, `partition` and `offset` name the source message of the first failure (the lowest
    offset of the first partition that failed) and `reason` why it failed; `failures` lists every
    failed one as (topic, partition, offset, reason). Offsets from `first_failed_offsets` on must
    not be checkpointed as done.
    """

    def __init__(self, failures: Sequence[tuple[str, int, int, str]]) -> None:
        self.failures = sorted(failures, key=lambda f: (f[0], f[1], f[2]))
        self.topic, self.partition, self.offset, self.reason = self.failures[0]
        more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        super().__init__(
            f"dead letter of {self.topic}[{self.partition}]@{self.offset} not delivered: "
            f"{self.reason}{more}"
        )

    def first_failed_offsets(self) -> dict[tuple[str, int], int]:
        """Per (topic, partition), the lowest source offset whose dead letter failed."""
        out: dict[tuple[str, int], int] = {}
        for topic, partition, offset, _ in self.failures:
            out.setdefault((topic, partition), offset)
        return out


class Sink(Protocol):
    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any: ...  # a future with is_done/failed()/exception (kafka-python's), or None

    def flush(self, timeout: float | None = None) -> None: ...


def _cut_bytes(data: bytes, limit: int, marker: bytes = b"...[cut]") -> bytes:
    if len(data) <= limit:
        return data
    head = data[: max(0, limit - len(marker))]
    return head.decode("utf-8", "ignore").encode() + marker  # no half character before it


def dead_letter_headers(
    record: Record, rejection: Rejection, original_size: int | None = None
) -> list[tuple[str, bytes]]:
    """Kafka headers naming the reason and the source topic, partition and offset; each bounded
    (the detail to `MAX_DETAIL_BYTES`, cut with a marker)."""
    headers = [
        ("driftline.reason", _cut_bytes(rejection.reason.encode(), _MAX_REASON_BYTES)),
        ("driftline.detail",
         _cut_bytes(rejection.detail.encode("utf-8", "replace"), MAX_DETAIL_BYTES)),
        ("driftline.source.topic", _cut_bytes(record.topic.encode(), _MAX_TOPIC_BYTES)),
        ("driftline.source.partition", str(record.partition).encode()),
        ("driftline.source.offset", str(record.offset).encode()),
        ("driftline.time", str(int(time.time() * 1000)).encode()),
    ]
    if original_size is not None:
        headers.append(("driftline.value.bytes", str(original_size).encode()))
    return headers


def _headers_size(headers: list[tuple[str, bytes]]) -> int:
    return sum(len(k) + len(v) + 10 for k, v in headers)  # + varint framing, generously


class DeadLetters:
    """Produces rejected messages to one topic, each record at most `max_bytes` (value and
    headers), never above `DEAD_LETTER_MAX_BYTES`; checks their delivery on `flush`."""

    def __init__(self, sink: Sink, topic: str, max_bytes: int = DEAD_LETTER_MAX_BYTES) -> None:
        self.sink = sink
        self.topic = topic
        self.max_bytes = min(max_bytes, DEAD_LETTER_MAX_BYTES)
        self._pending: list[tuple[Record, Any]] = []
        self._failed: list[tuple[str, int, int, str]] = []  # until clear_failures()

    def send(self, record: Record, rejection: Rejection) -> None:
        """Queue a dead letter; log it with at most `MAX_DETAIL_CHARS` of its detail."""
        value = record.value or b""
        headers = dead_letter_headers(record, rejection)
        room = self.max_bytes - _headers_size(headers) - 40  # 40: the size header, if cut
        if len(value) > room:
            headers = dead_letter_headers(record, rejection, len(value))
            value = value[: max(0, room)]
        log.warning("dead-lettered %s: %s (%s)", where(record), rejection.reason,
                    short(rejection.detail, MAX_DETAIL_CHARS))
        future = self.sink.send(self.topic, value, headers=headers)
        if future is not None:
            self._pending.append((record, future))

    def clear_failures(self) -> None:
        """Forget the failures `flush` reported: call once the state was rewound to before them
        (their messages will be read, and dead-lettered, again)."""
        self._failed = []

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every dead letter sent so far is written; raise `DeliveryFailed` naming
        the source of those that were not.

        Failures are sticky: every later `flush` raises them again until `clear_failures()`, so
        a caller that flushes once more before a checkpoint (a shutdown, say) cannot checkpoint
        past a lost dead letter by mistake.
        """
        pending, self._pending = self._pending, []
        try:
            self.sink.flush(timeout)
        except Exception as exc:  # e.g. a flush timeout: check each future below
            log.warning("flushing dead letters: %s", exc)
        failures = []
        for record, future in pending:
            if not getattr(future, "is_done", True):
                failures.append((record, "not acknowledged by the broker in time"))
            elif future.failed():
                error = future.exception
                failures.append((record, f"{type(error).__name__}: {error}"))
        for record, why in failures:
            log.error("dead letter of %s not delivered: %s", where(record), short(why))
        self._failed.extend((r.topic, r.partition, r.offset, short(why)) for r, why in failures)
        if self._failed:
            raise DeadLettersLost(self._failed)
