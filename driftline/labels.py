"""Whether `driftline serve` consumes a labels topic, and the check that it may.

A label on the labels topic must be read by the instance that read its event, and joined to the
state of its event's partition: so partition p of the labels topic goes with partition p of the
events topic (the same group, the range assignor), which holds only when both topics have as
many partitions and producers key events and labels by id alike.

The default topic (`<kafka.topic>.labels`) is consumed when it exists at start, so that a user
who never sends labels there (or whose broker does not create topics) is not bothered; a topic
named in `[labels] topic` must exist; `topic = ""` turns it off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from driftline.config import Settings
from driftline.errors import ConfigError

log = logging.getLogger("driftline.labels")


def check_copartitioned(events_topic: str, events_partitions: int,
                        labels_topic: str, labels_partitions: int) -> None:
    """`ConfigError` unless both topics have as many partitions."""
    if events_partitions != labels_partitions:
        raise ConfigError(
            f"labels.topic: {labels_topic} has {labels_partitions} partition(s) and "
            f"{events_topic} {events_partitions}; labels must be co-partitioned with their "
            "events (the same partition count, both keyed by id): give both topics as many "
            "partitions, or set [labels] topic = \"\" to read labels from the events topic only"
        )


def labels_topic(settings: Settings, partitions_of: Callable[[str], list[int]]) -> str | None:
    """The labels topic to consume next to the events topic, or None; `partitions_of(topic)`
    lists a topic's partitions ([] while it does not exist). Raises `ConfigError` when the
    topic named in the settings does not exist, or is not co-partitioned."""
    name = settings.labels_topic
    if not name:
        return None
    labels = partitions_of(name)
    if not labels:
        if settings.labels.topic is not None:
            raise ConfigError(f"labels.topic: topic {name} does not exist; create it with as "
                              f"many partitions as {settings.kafka.topic}")
        log.info("no topic %s: labels are read from %s only (restart once it exists)",
                 name, settings.kafka.topic)
        return None
    check_copartitioned(settings.kafka.topic, len(partitions_of(settings.kafka.topic)),
                        name, len(labels))
    return name
