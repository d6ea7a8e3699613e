"""Events waiting for their label, joined by id (delayed labels).

An event with an id and no label is predicted on arrival and kept here with that prediction;
when its label comes, the learner scores the prediction made at arrival and learns the event.
The store is bounded by count and by age, oldest dropped first; it takes the time as an
argument (no clock inside), so a replay gives the same result.

>>> pending = PendingLabels(max_pending=2, max_age=60.0)
>>> pending.add("a", {"t": 1}, "prediction of a", now=0.0)
>>> pending.add("b", {"t": 2}, "prediction of b", now=1.0)
>>> pending.add("c", {"t": 3}, "prediction of c", now=2.0)  # "a" is dropped: at most 2
>>> pending.expired, len(pending)
(1, 2)
>>> pending.take("b", now=3.0).x
{'t': 2}
>>> pending.take("b", now=4.0), pending.take("a", now=4.0)
('duplicate_label', 'unknown_id')
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, NamedTuple

UNKNOWN_ID = "unknown_id"  # no event waits under this id: never seen, dropped, or expired
DUPLICATE_LABEL = "duplicate_label"  # the event of this id has had its label already
DUPLICATE_ID = "duplicate_id"  # an event whose id is already waiting for its label


class Pending(NamedTuple):
    """One event waiting for its label."""

    x: dict[str, Any]
    prediction: Any  # what the learner predicted on arrival (`pipeline.Prediction`)
    arrived: float  # when it arrived (seconds, the caller's clock)


class PendingLabels:
    """Events waiting for their label, by id, oldest first.

    Parameters
    ----------
    max_pending
        At most this many events wait; past it the oldest is dropped (`expired`).
    max_age
        Seconds an event waits at most; then it is dropped (`expired`).
    """

    def __init__(self, max_pending: int = 100_000, max_age: float = 86_400.0) -> None:
        if max_pending < 1 or not max_age > 0:
            raise ValueError("max_pending must be >= 1 and max_age > 0")
        self.max_pending = max_pending
        self.max_age = max_age
        self.waiting: OrderedDict[Hashable, Pending] = OrderedDict()
        # Ids labelled lately, to tell a second label from an unknown id (bounded the same way).
        self.labelled: OrderedDict[Hashable, None] = OrderedDict()
        self.expired = 0  # events dropped unlabelled, in all

    def __len__(self) -> int:
        return len(self.waiting)

    def add(self, event_id: Hashable, x: dict[str, Any], prediction: Any, now: float) -> None:
        """Keep an event until its label comes; raises `KeyError` if `event_id` is waiting."""
        if event_id in self.waiting:
            raise KeyError(event_id)
        self.waiting[event_id] = Pending(x, prediction, now)
        self.expire(now)

    def take(self, event_id: Hashable, now: float) -> Pending | str:
        """The waiting event of `event_id`, removed; else why not (`unknown_id` or
        `duplicate_label`)."""
        self.expire(now)
        found = self.waiting.pop(event_id, None)
        if found is None:
            return DUPLICATE_LABEL if event_id in self.labelled else UNKNOWN_ID
        labelled = self.labelled
        labelled[event_id] = None
        while len(labelled) > self.max_pending:
            labelled.popitem(last=False)
        return found

    def expire(self, now: float) -> int:
        """Drop the events past the bounds, oldest first; how many were dropped."""
        waiting = self.waiting
        dropped = 0
        while len(waiting) > self.max_pending:
            waiting.popitem(last=False)
            dropped += 1
        oldest = now - self.max_age
        while waiting:
            first = next(iter(waiting.values()))
            if first.arrived >= oldest:
                break
            waiting.popitem(last=False)
            dropped += 1
        self.expired += dropped
        return dropped
