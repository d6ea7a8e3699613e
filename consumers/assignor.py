"""The partition assignor of `checkpoint.scope = "global"`: every partition to one member.

One global learning state must see every partition, so an instance must never be handed a
subset: the group leader gives all partitions of the subscribed topics to one member, and the
others stay in the group with nothing, hot standbys that take over when the owner leaves or is
evicted. The owner is kept across rebalances (each member says in its subscription whether it
owns the partitions now), so a standby joining does not move the state; with no owner, the
member with the smallest id (static id first) is chosen.
"""

from __future__ import annotations

import logging
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
            if partitions is None:
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
