"""Partition assignors: `OneOwnerAssignor`, every partition to one member, for
`checkpoint.scope = "global"`; and `JoinWatch`, around any assignor, to see a join that the
client never completed.

One global learning state must see every partition, so an instance must never be handed a
subset: the group leader gives all partitions of the subscribed topics to one member, and the
others stay in the group with nothing, hot standbys that take over when the owner leaves or is
evicted. The owner is kept across rebalances (each member says in its subscription whether it
owns the partitions now), so a standby joining does not move the state; with no owner, the
member with the smallest id (static id first) is chosen.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from kafka.protocol.consumer.metadata import (
    ConsumerProtocolAssignment,
    ConsumerProtocolSubscription,
)

log = logging.getLogger(__name__)

OWNER = b"driftline-owner"


class OneOwnerAssignor(AbstractPartitionAssignor):
    name = "driftline-one-owner"
    version = 0

    def __init__(self) -> None:
        self.owning = False

    def metadata(self, topics: Any) -> Any:
        return ConsumerProtocolSubscription(self.version, sorted(topics),
                                            OWNER if self.owning else b"")

    def assign(self, cluster: Any, members: Any) -> dict[str, Any]:
        def rank(member: Any) -> tuple[int, str, str]:
            owner = 0 if member.metadata.user_data == OWNER else 1
            return owner, member.group_instance_id or "\uffff", member.member_id

        ordered = sorted(members, key=rank)
        owner = ordered[0]
        topics: set[str] = set()
        for member in members:
            topics.update(member.metadata.topics)
        everything = []
        for topic in sorted(topics):
            partitions = cluster.partitions_for_topic(topic)
            if not partitions:  # unknown, or known with none yet: a topic just created
                log.warning("no partition metadata for topic %s", topic)
                continue
            everything.append((topic, sorted(partitions)))
        log.info("every partition of %s to %s (%d standing by)", sorted(topics),
                 owner.group_instance_id or owner.member_id, len(members) - 1)
        return {
            member.member_id: ConsumerProtocolAssignment(
                self.version, everything if member is owner else [], b"")
            for member in members
        }

    def on_assignment(self, assignment: Any, generation: Any) -> None:
        self.owning = bool(assignment.partitions())


class JoinWatch(AbstractPartitionAssignor):
    """An assignor, watched: tells when a join it assigned for was never completed.

    kafka-python 3.0 can drop a finished join. A rebalance that a metadata change started (a
    new topic's partitions appearing just after the group formed) can still be in flight when a
    poll's timeout ends. By then the leader's assignment already matches the metadata, so the
    client sees no reason to rejoin and never applies the join's outcome: the member stays
    without partitions until the next rebalance. The leader calls `assign`, then
    `on_assignment` when it applies the join; `stalled` says neither that nor a new join
    (`metadata`, asked for each JoinGroup request) has followed.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.assigned_at: float | None = None  # when `assign` ran without `on_assignment` since

    @property
    def name(self) -> str:  # kafka-python chooses the protocol by this name
        return str(self.inner.name)

    def supported_protocols(self) -> Any:
        return self.inner.supported_protocols()

    def metadata(self, topics: Any) -> Any:
        # Asked for each JoinGroup request: a new join is under way (a failed SyncGroup is
        # retried so), and an assignment made before it is not awaited any more.
        self.assigned_at = None
        return self.inner.metadata(topics)

    def assign(self, cluster: Any, members: Any) -> Any:
        self.assigned_at = time.monotonic()
        return self.inner.assign(cluster, members)

    def on_assignment(self, assignment: Any, generation: Any) -> None:
        self.assigned_at = None
        self.inner.on_assignment(assignment, generation)

    def stalled(self, after: float) -> bool:
        """Whether a join assigned for more than `after` seconds ago is still not applied."""
        return self.assigned_at is not None and time.monotonic() - self.assigned_at > after
