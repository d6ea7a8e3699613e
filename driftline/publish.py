"""`driftline publish`: a CSV file, the bundled Elec2, or a synthetic drifting stream, as events
on a topic, optionally paced. The way a user feeds the demo or a load test.
"""

from __future__ import annotations

import collections
import itertools
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from consumers.wire import encode
from driftline.errors import DataError


class Progress:
    """A progress line on stderr: rewritten in place on a terminal, every 10 s in a log."""

    def __init__(self, total: int | None, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self.start = self.last = time.monotonic()

    def update(self, n: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        of = f"/{self.total}" if self.total else ""
        line = f"published {n}{of} events, {n / elapsed:,.0f} events/s, {elapsed:.1f} s"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def paced(rows: Iterable[Any], rate: float | None) -> Iterator[Any]:
    """`rows` at no more than `rate` per second (on average, checked every few rows)."""
    if not rate:
        yield from rows
        return
    start = time.monotonic()
    for i, row in enumerate(rows):
        if i % 10 == 0:
            ahead = start + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        yield row


Send = Callable[[bytes, bytes | None], object]
"""`send(value, key)`: one message to a topic."""


def publish(
    send: Send,
    rows: Iterable[tuple[dict[str, Any], Any]],
    *,
    rate: float | None = None,
    limit: int | None = None,
    loop: bool = False,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    label_delay: int = 0,
    send_label: Send | None = None,
) -> int:
    """Send each (x, y) as the wire bytes of one event; returns how many were sent.

    With `label_delay`, each event goes without its label but with an id (its number), and its
    label follows as `{"id": ..., "y": ...}` after `label_delay` more events, through
    `send_label` (default: `send`, the events topic); the labels still held back at the end
    follow the last event. Both are keyed by the id, so that a label lands in the partition of
    its event when the labels topic has as many partitions."""
    label = send_label or send
    if loop:
        cached = list(rows)
        if not cached:
            raise DataError("--loop: there are no rows to repeat")
        rows = itertools.chain.from_iterable(itertools.repeat(cached))
    if limit is not None:
        rows = itertools.islice(rows, limit)
    n = 0
    held: collections.deque[tuple[str, Any]] = collections.deque()
    for x, y in paced(rows, rate):
        if label_delay > 0:
            if len(held) >= label_delay:  # due now: before the event that makes it due
                due_id, y_due = held.popleft()
                label(encode(None, y_due, due_id), due_id.encode())
            event_id = f"e{n}"
            send(encode(x, None, event_id), event_id.encode())
            held.append((event_id, y))
        else:
            send(encode(x, y), None)
        n += 1
        if progress is not None and n % 100 == 0:
            progress.update(n)
        if should_stop():
            break
    while held:
        due_id, y_due = held.popleft()
        label(encode(None, y_due, due_id), due_id.encode())
    if progress is not None:
        progress.update(n, final=True)
    return n
