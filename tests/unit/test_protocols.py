"""The contracts between the packages: the Source protocol is implemented in full by the Kafka
source and by the in-memory one; dead-letter reasons come from one list."""

from __future__ import annotations

import inspect

import pytest

from consumers.kafka_io import KafkaSource
from consumers.source import Source
from consumers.wire import REASONS, Rejection
from tests.memory import ListSource, PartitionedSource

PROTOCOL = {
    name for name, member in vars(Source).items()
    if inspect.isfunction(member) and not name.startswith("_")
}


def test_the_protocol_names_every_method_the_service_uses():
    expected = {"poll", "seek", "seek_to_start", "assignment", "resubscribe", "commit", "lag",
                "behind", "caught_up", "pause", "resume",
                "close"}
    assert expected == PROTOCOL


@pytest.mark.parametrize("cls", [KafkaSource, ListSource, PartitionedSource])
def test_each_source_implements_all_of_the_protocol(cls):
    for name in PROTOCOL:
        ours = inspect.signature(getattr(Source, name))
        theirs = inspect.signature(getattr(cls, name))
        assert list(theirs.parameters)[: len(ours.parameters)] == list(ours.parameters), name


def test_a_rejection_reason_must_be_listed():
    assert Rejection("not_json", "").reason == "not_json"
    with pytest.raises(ValueError, match="REASONS"):
        Rejection("something_new", "")
    assert len(set(REASONS)) == len(REASONS)
