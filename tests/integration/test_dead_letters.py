"""Bad input never stops the service: 500 malformed messages of ten kinds among 5,000 Elec2
events. The accuracy is River's over the good events alone; the dead-letter topic holds exactly
the bad messages, each with its reason and source position."""

from __future__ import annotations

import random

from river import evaluate, metrics

from consumers.kafka_io import KafkaSink
from consumers.wire import encode
from driftline.datasets import bundled
from tests.integration.support import (
    ONE_MODEL,
    Service,
    free_port,
    read_topic,
    river_logistic_regression,
    sample,
    wait_for,
    write_config,
)

FEATURES = ["period", "nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"]
SCHEMA = ", ".join(f'{name} = "number"' for name in FEATURES)
CONFIG = ONE_MODEL + f"""
[validation]
features = {{ {SCHEMA} }}
"""

MALFORMED = {
    "not_json": b'{"x": {"period": 0.5,',
    "empty": b"",
    "not_utf8": b'{"x": {"period": "\xff\xfe"}, "y": 1}',
    "x_not_mapping": b'{"x": [0.1, 0.2], "y": 1}',
    "bad_feature": b'{"x": {"period": {"nested": 0.5}}, "y": 0}',
    "missing_x": b'{"features": {"period": 0.5}, "y": 1}',
    "schema": encode({**dict.fromkeys(FEATURES, 0.5), "period": "noon"}, 1),
    "not_object": b"[1, 2, 3]",
    "not_finite": b'{"x": {"period": 1e999}, "y": 1}',
    "bad_label": encode(dict.fromkeys(FEATURES, 0.5), {"class": 1}),
}


def test_malformed_messages_go_to_the_dead_letter_topic(kafka_bootstrap, new_topic, tmp_path):
    topic = new_topic()
    good = list(bundled("elec", limit=5000))
    rng = random.Random(5)
    kinds = list(MALFORMED)
    bad_at = set(rng.sample(range(5500), 500))
    messages, expected_bad = [], {}
    rows = iter(good)
    for i in range(5500):
        if i in bad_at:
            kind = kinds[len(expected_bad) % len(kinds)]
            messages.append(MALFORMED[kind])
            expected_bad[i] = kind
        else:
            x, y = next(rows)
            messages.append(encode(x, y))
    sink = KafkaSink(kafka_bootstrap)
    for value in messages:
        sink.send(topic, value)
    sink.flush()
    sink.close()

    port = free_port()
    config = write_config(tmp_path / "driftline.toml", kafka_bootstrap, topic, port, extra=CONFIG)
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: sample(port, "driftline_samples_learned", model="lr") == 5000,
                 timeout=90, what="5000 learned")
        wait_for(lambda: sample(port, "driftline_events_total", outcome="dead_lettered") == 500,
                 timeout=30, what="500 dead-lettered")
        live = sample(port, "driftline_prequential_accuracy", model="lr")
        by_reason = {kind: sample(port, "driftline_dead_letters_total", reason=kind)
                     for kind in kinds}
        assert service.proc is not None and service.proc.poll() is None
        assert service.stop() == 0

    reference = evaluate.progressive_val_score(
        good, river_logistic_regression(),
        metrics.Accuracy(),
    ).get()
    assert live is not None and abs(live - reference) <= 1e-9
    assert by_reason == {kind: 50 for kind in kinds}

    dead = read_topic(kafka_bootstrap, f"{topic}.dlq", expected=500)
    assert len(dead) == 500
    seen = {}
    for record in dead:
        headers = {key: value.decode() for key, value in record.headers}
        offset = int(headers["driftline.source.offset"])
        assert headers["driftline.source.topic"] == topic
        assert headers["driftline.source.partition"] == "0"
        assert int(headers["driftline.time"]) > 0
        assert headers["driftline.reason"] == expected_bad[offset]
        assert record.value == MALFORMED[expected_bad[offset]]
        seen[offset] = headers["driftline.reason"]
    assert seen == expected_bad
