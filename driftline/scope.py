"""What one learning state covers: every partition (`global`) or one input partition each.

In `partition` scope the service's pipeline is a `Partitioned`: one independent learner (its own
models, detectors, scores and ensemble, built by `build_learner`) per input partition, created at
the partition's first assignment. A checkpoint (a `State`) holds it whole in the file store; the
Kafka store writes one state per partition ("scope unit").
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.ensemble import DriftEnsemble
from pipeline.pending import PendingLabels

GLOBAL = "global"
PARTITION = "partition"
SCOPES = (GLOBAL, PARTITION)


class Partitioned(dict[int, DriftEnsemble]):
    """Input partition -> its learner. Pickled with the names of the configured models, so a
    restore can refuse a checkpoint of other models before any partition exists."""

    def __init__(self, names: Iterable[str], units: dict[int, DriftEnsemble] | None = None):
        super().__init__(units or {})
        self.names = list(names)

    @property
    def member_names(self) -> list[str]:
        return self.names

    @property
    def labelled(self) -> int:
        """Labelled events learned, over every partition."""
        return sum(learner.labelled for learner in self.values())


class PartitionedPending(dict[int, PendingLabels]):
    """Partition scope: the events waiting for a label, one store per input partition (its
    unit's, saved with its learner; a label joins the events of its partition), each bounded by
    `max_pending` and `max_age`."""

    def __init__(self, max_pending: int = 100_000, max_age: float = 86_400.0,
                 units: dict[int, PendingLabels] | None = None) -> None:
        super().__init__(units or {})
        self.max_pending = max_pending
        self.max_age = max_age

    def of(self, partition: int) -> PendingLabels:
        found = self.get(partition)
        if found is None:
            found = self[partition] = PendingLabels(self.max_pending, self.max_age)
        return found

    def bound(self, max_pending: int, max_age: float) -> None:
        """Our bounds, on every store (the settings may have changed since a checkpoint)."""
        self.max_pending, self.max_age = max_pending, max_age
        for store in self.values():
            store.max_pending, store.max_age = max_pending, max_age

    @property
    def waiting(self) -> int:
        return sum(len(store) for store in self.values())

    @property
    def expired(self) -> int:
        return sum(store.expired for store in self.values())


def unit_key(scope: str, partition: int) -> str:
    """The key of the state that learns `partition` (the Kafka store's message key)."""
    return GLOBAL if scope == GLOBAL else f"{PARTITION}-{partition}"
