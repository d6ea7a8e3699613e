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

A dead letter the broker refuses for good (too large for the dead-letter topic's
`max.message.bytes`, say) would stall its partition forever. So a refusal for good is remembered
per source message: the first one is reported (the caller rolls back and reads the message
again), and when the retry is refused again, `flush` resends it at once as a minimal dead letter
(headers only, no value, `driftline.value.omitted` saying why), so that nothing is lost and the
partition moves on. Only a minimal dead letter the broker refuses too is reported again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
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
MINIMAL_DETAIL_BYTES = 200  # the driftline.detail header of a minimal dead letter
# Errors by which the broker (or the producer) refuses a record for good: sending the same record
# again cannot succeed. Matched by the exception's class name (kafka-python's
# MessageSizeTooLargeError, RecordListTooLargeError...), since consumers/deadletter.py does not
# import the client.
REFUSED_FOR_GOOD = ("MessageSizeTooLarge", "RecordListTooLarge", "RecordTooLarge")
CANCEL_CHECK_SECONDS = 0.2  # how often a flush asks its `cancel` whether to give up
_MAX_REMEMBERED = 10_000  # source messages whose dead letter was refused for good, remembered


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


def minimal_headers(
    record: Record, rejection: Rejection, original_size: int, why: str
) -> list[tuple[str, bytes]]:
    """The headers of a minimal dead letter: the source, the reason, a short detail, the value's
    size and `driftline.value.omitted` saying why the value was left out."""
    headers = [
        (k, _cut_bytes(v, MINIMAL_DETAIL_BYTES) if k == "driftline.detail" else v)
        for k, v in dead_letter_headers(record, rejection, original_size)
    ]
    omitted = f"the broker refused the dead letter with its value: {why}"
    headers.append(("driftline.value.omitted",
                    _cut_bytes(omitted.encode("utf-8", "replace"), MINIMAL_DETAIL_BYTES)))
    return headers


def refused_for_good(error: BaseException | None) -> bool:
    """Whether `error` means the broker will never accept that record (it is too large)."""
    return error is not None and any(
        name in cls.__name__ for cls in type(error).__mro__ for name in REFUSED_FOR_GOOD
    )


def _key(record: Record) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset


def _headers_size(headers: list[tuple[str, bytes]]) -> int:
    return sum(len(k) + len(v) + 10 for k, v in headers)  # + varint framing, generously


class DeadLetters:
    """Produces rejected messages to one topic, each record at most `max_bytes` (value and
    headers), never above `DEAD_LETTER_MAX_BYTES`; checks their delivery on `flush`."""

    def __init__(self, sink: Sink, topic: str, max_bytes: int = DEAD_LETTER_MAX_BYTES) -> None:
        self.sink = sink
        self.topic = topic
        self.max_bytes = min(max_bytes, DEAD_LETTER_MAX_BYTES)
        self._pending: list[tuple[Record, Rejection, Any]] = []
        self._failed: list[tuple[str, int, int, str]] = []  # until clear_failures()
        # (topic, partition, offset) of source messages whose dead letter the broker refused
        # for good once: refused again, it is resent as a minimal dead letter.
        self._refused: dict[tuple[str, int, int], None] = {}
        self.minimal_sent = 0  # minimal dead letters delivered in all
        self._unflushed = 0  # dead letters sent since the last flush

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
        self._unflushed += 1
        if future is not None:
            self._pending.append((record, rejection, future))

    def clear_failures(self) -> None:
        """Forget the failures `flush` reported: call once the state was rewound to before them
        (their messages will be read, and dead-lettered, again)."""
        self._failed = []

    def flush(
        self, timeout: float | None = None, *, cancel: Callable[[], bool] | None = None
    ) -> None:
        """Wait (at most `timeout` seconds, None: as long as it takes) until every dead letter
        sent so far is written; raise `DeliveryFailed` naming the source of those that were
        not. One not acknowledged within `timeout`, or by the time `cancel()` answers true
        (asked every `CANCEL_CHECK_SECONDS`: a shutdown must not wait for a broker that is
        away), counts as not written.

        A dead letter refused for good a second time for the same source message is resent at
        once as a minimal one (headers only) and counts as written when that one is.

        Failures are sticky: every later `flush` raises them again until `clear_failures()`, so
        a caller that flushes once more before a checkpoint (a shutdown, say) cannot checkpoint
        past a lost dead letter by mistake.
        """
        pending, self._pending = self._pending, []
        if not self._unflushed:
            # Nothing sent since the last flush: nothing to wait for, not even the records a
            # flush gave up on that the sink still holds (a shutdown with the broker away).
            if self._failed:
                raise DeadLettersLost(self._failed)
            return
        self._unflushed = 0
        failures = []
        again = []  # refused for good a second time: resent as minimal dead letters
        for failure in self._wait(pending, timeout, cancel):
            record, rejection, why, error = failure
            if refused_for_good(error):
                key = _key(record)
                if key in self._refused:
                    again.append(failure)
                    continue
                self._remember(key)
            failures.append(failure)
        if again:
            resent = []
            for record, rejection, why, _ in again:
                log.warning("dead letter of %s refused again (%s): resending it without its "
                            "value", where(record), short(why))
                headers = minimal_headers(record, rejection, len(record.value or b""), why)
                future = self.sink.send(self.topic, b"", headers=headers)
                if future is not None:
                    resent.append((record, rejection, future))
            lost = self._wait(resent, timeout, cancel)
            lost_keys = {_key(r) for r, _, _, _ in lost}
            for record, _, _ in resent:
                if _key(record) not in lost_keys:
                    self.minimal_sent += 1
                    self._refused.pop(_key(record), None)
            failures.extend((r, rej, f"minimal dead letter: {why}", err)
                            for r, rej, why, err in lost)
        for record, _, why, _ in failures:
            log.error("dead letter of %s not delivered: %s", where(record), short(why))
        self._failed.extend((r.topic, r.partition, r.offset, short(why))
                            for r, _, why, _ in failures)
        if self._failed:
            raise DeadLettersLost(self._failed)

    def _wait(
        self,
        pending: list[tuple[Record, Rejection, Any]],
        timeout: float | None,
        cancel: Callable[[], bool] | None = None,
    ) -> list[tuple[Record, Rejection, str, BaseException | None]]:
        """Flush the sink and check each future: those not written, with why."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            step = left if cancel is None else min(CANCEL_CHECK_SECONDS, left or math.inf)
            try:
                self.sink.flush(step)
                error = None
            except Exception as exc:  # e.g. a flush timeout: check each future below
                error = exc
            if all(getattr(f, "is_done", True) for _, _, f in pending):
                break
            over = deadline is not None and time.monotonic() >= deadline
            if cancel is None or cancel() or over:
                break  # without `cancel`, the sink's flush(timeout) was the whole wait
        if error is not None:
            log.warning("flushing dead letters: %s", error)
        failures: list[tuple[Record, Rejection, str, BaseException | None]] = []
        for record, rejection, future in pending:
            if not getattr(future, "is_done", True):
                failures.append((record, rejection, "not acknowledged by the broker in time",
                                 None))
            elif future.failed():
                error = future.exception
                failures.append((record, rejection, f"{type(error).__name__}: {error}", error))
        return failures

    def _remember(self, key: tuple[str, int, int]) -> None:
        self._refused[key] = None
        if len(self._refused) > _MAX_REMEMBERED:  # the oldest goes: a bound on memory
            del self._refused[next(iter(self._refused))]
