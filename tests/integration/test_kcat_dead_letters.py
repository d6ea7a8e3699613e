"""Events published by a Kafka client no one here wrote (kcat), compressed or not: good ones are
learned, bad ones go to the dead-letter topic with their reason and source position, and the
service stays up."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from consumers.wire import encode
from driftline.datasets import bundled
from tests.integration.support import Service, free_port, sample, wait_for, write_config

BAD = [b"not json", b"[1, 2, 3]", b'{"y": 1}', b'{"x": [1, 2], "y": 1}',
       b'{"x": {"a": {"nested": 1}}, "y": 0}', b'{"x": {"a": 1e999}, "y": 0}',
       b'{"x": {"a": 1}, "y": {"label": 1}}']


def kcat(*args: str, data: bytes | None = None) -> bytes:
    exe = shutil.which("kcat")
    if exe is None:
        pytest.fail("kcat is not installed (make system-deps installs it)")
    return subprocess.run([exe, *args], input=data, capture_output=True, check=True,
                          timeout=60).stdout


def test_kcat_events_are_learned_and_bad_ones_dead_lettered(kafka_bootstrap, new_topic, tmp_path):
    topic = new_topic()
    good = [encode(x, y) for x, y in bundled("elec", limit=400)]
    messages = good[:200] + BAD + good[200:] + [encode({"period": 0.5})]  # last: unlabelled
    bad_offsets = {200 + i: reason for i, reason in enumerate(BAD)}
    # One message per line; -z none keeps the bytes as they are on the wire.
    kcat("-P", "-b", kafka_bootstrap, "-t", topic, "-z", "none", data=b"\n".join(messages) + b"\n")

    port = free_port()
    config = write_config(tmp_path / "driftline.toml", kafka_bootstrap, topic, port)
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: sample(port, "driftline_events_total", outcome="unlabelled") == 1,
                 timeout=90, what="every message processed")
        assert sample(port, "driftline_events_total", outcome="learned") == 400
        assert sample(port, "driftline_events_total", outcome="dead_lettered") == len(BAD)
        assert service.proc is not None and service.proc.poll() is None  # still up
        assert service.stop() == 0

    out = kcat("-C", "-b", kafka_bootstrap, "-t", f"{topic}.dlq", "-e", "-q",
               "-f", "%h\t%s\n")
    lines = out.decode().strip().splitlines()
    assert len(lines) == len(BAD)
    for line in lines:
        headers_text, _, value = line.partition("\t")
        # kcat joins headers with ","; a detail may hold commas, so split on header names.
        headers = dict(re.findall(r"(driftline\.[a-z.]+)=(.*?)(?=,driftline\.|$)", headers_text))
        offset = int(headers["driftline.source.offset"])
        assert value.encode() == bad_offsets[offset]
        assert headers["driftline.source.topic"] == topic
        assert headers["driftline.source.partition"] == "0"
        assert headers["driftline.reason"]


def test_events_compressed_with_each_of_kafkas_codecs_are_learned(kafka_bootstrap, new_topic,
                                                                   tmp_path):
    """A producer may compress its batches (Java's and librdkafka's `compression.type`): the
    consumer decompresses gzip, snappy, lz4 and zstd. Without the libraries of the last three,
    one such batch stopped the service's consumer for good, retrying the same fetch."""
    topic = new_topic()
    events = [encode(x, y) for x, y in bundled("elec", limit=400)]
    codecs = ["gzip", "snappy", "lz4", "zstd"]
    for i, codec in enumerate(codecs):
        chunk = events[i * 100:(i + 1) * 100]
        kcat("-P", "-b", kafka_bootstrap, "-t", topic, "-z", codec,
             data=b"\n".join(chunk) + b"\n")

    port = free_port()
    config = write_config(tmp_path / "driftline.toml", kafka_bootstrap, topic, port)
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: sample(port, "driftline_events_total", outcome="learned") == 400,
                 timeout=60, what="the events of every codec learned")
        assert sample(port, "driftline_events_total", outcome="dead_lettered") == 0
        assert service.stop() == 0
