"""Labels on their own topic through a real broker: each event scored once on the prediction
made at arrival and learned once when its label comes, 1,000 events later, with the accuracy of
`driftline evaluate --delay 1000`; the same counts through SIGKILLs with labels in flight; a
labels topic with another partition count refused at start."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from consumers.kafka_io import create_topic
from tests.integration.support import Service, driftline, sample, wait_for
from tests.integration.test_exactly_once import (
    consuming,
    elec_csv,
    kill_while_learning,
    learned,
    setup,
)

DELAY = 1000


def publish_delayed(bootstrap: str, topic: str, limit: int,
                    rate: int | None = None) -> subprocess.Popen:
    """Elec2 rows [0, limit) as events with an id, their labels DELAY events later on the
    labels topic."""
    args = [sys.executable, "-m", "driftline", "publish", "--bootstrap-servers", bootstrap,
            "--topic", topic, "--csv", str(elec_csv(0, limit)), "--target", "class",
            "--label-delay", str(DELAY)]
    if rate:
        args += ["--rate", str(rate)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def counts(port: int) -> dict[str, float | None]:
    return {
        "learned": learned(port),
        "tested": sample(port, "driftline_samples_tested", model="lr"),
        "predictions": sample(port, "driftline_predictions_total", model="lr"),
        "events learned": sample(port, "driftline_events_total", outcome="learned"),
        "events unlabelled": sample(port, "driftline_events_total", outcome="unlabelled"),
        "dead letters": sample(port, "driftline_events_total", outcome="dead_lettered"),
        "pending": sample(port, "driftline_pending_labels"),
    }


def assert_once(got: dict[str, float | None], n: int) -> None:
    """Every event predicted once on arrival, scored once and learned once; none dead-lettered,
    none waiting. (A prediction is scored with its label, so scoring twice is learning twice.
    The first DELAY events are predicted before anything was learned: no prediction to score;
    and the events written in the same millisecond as the first label, taken before it.)"""
    tested = got.pop("tested")
    assert got.pop("predictions") == tested
    # At most n: an event is scored only when its label joins it, and each join is a learning
    # (learned == n below). More than n - DELAY is possible after a kill: the replay may take
    # the two topics in another interleaving, so an early event is predicted after a label.
    assert tested is not None and n - DELAY - 50 <= tested <= n, tested
    assert got == {"learned": n, "events learned": n, "events unlabelled": n, "dead letters": 0,
                   "pending": 0}


def labelled_topics(new_topic, bootstrap: str, partitions: int = 1,
                    label_partitions: int | None = None) -> str:
    topic = new_topic(partitions)
    create_topic(bootstrap, f"{topic}.labels", label_partitions or partitions)
    return topic


def test_labels_topic_1000_late_scores_and_learns_each_event_once_as_evaluate_delay(
    kafka_bootstrap, new_topic, tmp_path
):
    n = 4000
    topic = labelled_topics(new_topic, kafka_bootstrap)
    config, port = setup(tmp_path, kafka_bootstrap, topic)
    # All published first: the service reads a backlog of both topics, the labels topic's
    # far smaller records racing ahead unless the service keeps them in order.
    assert publish_delayed(kafka_bootstrap, topic, n).wait(120) == 0
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: learned(port) == n, timeout=120, what=f"{n} learned")
        time.sleep(1.5)  # anything scored or learned twice would show now
        got = counts(port)
        live = sample(port, "driftline_prequential_accuracy", model="lr")
        assert service.stop() == 0
    assert f"consuming {topic} and {topic}.labels" in service.output()
    assert_once(got, n)
    report = json.loads(driftline("evaluate", "--csv", str(elec_csv(0, n)), "--target", "class",
                                  "--config", str(config), "--delay", str(DELAY)).stdout)
    offline = report["models"]["lr"]["accuracy"]
    assert live is not None and abs(live - offline) <= 0.01, (live, offline)


def test_sigkill_with_labels_in_flight_scores_and_learns_each_event_once(
    kafka_bootstrap, new_topic, tmp_path
):
    n = 8000
    topic = labelled_topics(new_topic, kafka_bootstrap)
    config, port = setup(tmp_path, kafka_bootstrap, topic)
    publisher = publish_delayed(kafka_bootstrap, topic, n, rate=700)
    rng = random.Random(20261128)
    log = tmp_path / "serve.log"
    kill_while_learning(config, log, port, publisher, rng, times=6)
    assert publisher.wait(120) == 0
    with Service(config, log) as service:
        wait_for(lambda: learned(port) == n, timeout=120, what=f"{n} samples learned")
        time.sleep(1.5)  # a replay of anything learned before would push it past n
        got = counts(port)
        assert service.stop() == 0
    assert service.output().count("restored checkpoint") >= 5, service.output()[-3000:]
    assert_once(got, n)


def test_a_labels_topic_with_another_partition_count_is_refused_at_start(
    kafka_bootstrap, new_topic, tmp_path
):
    topic = labelled_topics(new_topic, kafka_bootstrap, partitions=2, label_partitions=1)
    config, _ = setup(tmp_path, kafka_bootstrap, topic)
    with Service(config, tmp_path / "serve.log") as service:
        assert service.proc is not None and service.proc.wait(60) == 2
    assert f"{topic}.labels has 1 partition(s) and {topic} 2" in service.output()


def test_no_labels_topic_is_no_bother(kafka_bootstrap, new_topic, tmp_path: Path):
    topic = new_topic()
    config, port = setup(tmp_path, kafka_bootstrap, topic)
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: consuming(port), timeout=60, what="the service consuming")
        assert service.stop() == 0
    assert f"no topic {topic}.labels" in service.output()


def test_kafka_store_partition_scope_sigkills_learn_each_event_once(
    kafka_bootstrap, new_topic, tmp_path, monkeypatch
):
    """Two partitions each, states and both topics' offsets in the Kafka store's transactions,
    waiting events in each partition's unit."""
    from tests.integration.test_fleet import KEY_ENV, fleet_config
    from tests.integration.test_fleet import learned as learned_over_partitions

    n = 6000
    topic = labelled_topics(new_topic, kafka_bootstrap, partitions=2)
    config = fleet_config(tmp_path, kafka_bootstrap, topic, "one")
    port = int(config.read_text().split("port = ")[1].split("\n")[0])
    for name, value in KEY_ENV.items():
        monkeypatch.setenv(name, value)
    publisher = publish_delayed(kafka_bootstrap, topic, n, rate=1500)
    rng = random.Random(7)
    log = tmp_path / "serve.log"
    for _ in range(3):
        with Service(config, log) as service:
            wait_for(lambda: learned_over_partitions(config) > 0 or publisher.poll() is not None,
                     timeout=90, what="the service learning")
            time.sleep(rng.uniform(0.5, 2.0))
            assert service.proc is not None
            service.proc.send_signal(signal.SIGKILL)
            service.proc.wait(10)
    assert publisher.wait(120) == 0
    with Service(config, log) as service:
        try:
            wait_for(lambda: learned_over_partitions(config) == n, timeout=180,
                     what=f"{n} learned over both partitions")
        except AssertionError as timeout:
            raise AssertionError(
                f"{timeout}: {learned_over_partitions(config)} learned, "
                f"{sample(port, 'driftline_pending_labels')} pending\n{service.output()[-6000:]}"
            ) from None
        time.sleep(2)
        assert learned_over_partitions(config) == n
        pending = sample(port, "driftline_pending_labels")
        dead = sample(port, "driftline_events_total", outcome="dead_lettered")
        assert service.stop() == 0
    assert pending == 0 and dead == 0
