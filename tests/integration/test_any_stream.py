"""Through the real broker: a multiclass stream with string labels, string (categorical)
features, booleans written as text and empty cells, published from a CSV file, learned by the
default model set exactly as `driftline evaluate` learns the same file."""

from __future__ import annotations

import csv
import random

from driftline.config import Settings
from driftline.datasets import read_csv
from driftline.learning import build_learner
from pipeline.evaluate import evaluate
from tests.integration.support import Service, driftline, free_port, sample, wait_for, write_config

N = 3000


def write_stream(path, n=N, seed=3):
    """Four classes named by strings; `shade` is categorical; `flag` is True/False text that
    carries no information; a fifth of the `a` and `shade` cells are empty."""
    rng = random.Random(seed)
    with open(path, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["a", "b", "shade", "flag", "label"])
        for _ in range(n):
            a, b = rng.random(), rng.random()
            shade = rng.choice(["light", "dark"])
            label = ("north" if a > 0.5 else "south") + "-" + shade
            out.writerow([
                "" if rng.random() < 0.2 else f"{a:.6f}",
                f"{b:.6f}",
                "" if rng.random() < 0.2 else shade,
                rng.choice(["True", "False", "true", "FALSE"]),
                label,
            ])
    return path


def test_a_multiclass_string_labelled_categorical_stream_is_served_as_evaluated(
    kafka_bootstrap, new_topic, tmp_path
):
    topic = new_topic()
    data = write_stream(tmp_path / "stream.csv")
    driftline("publish", "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
              "--csv", str(data), "--target", "label")
    port = free_port()
    config = write_config(tmp_path / "driftline.toml", kafka_bootstrap, topic, port)
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: sample(port, "driftline_events_total", outcome="learned") == N,
                 timeout=120, what=f"{N} events learned")
        served = sample(port, "driftline_prequential_accuracy", model="ensemble")
        dead = sample(port, "driftline_events_total", outcome="dead_lettered")
        recall = sample(port, "driftline_prequential_recall", model="ensemble", **{
            "class": "north-dark"})
        failures = [sample(port, "driftline_model_failures_total", model=m.name)
                    for m in Settings().models]
        assert service.stop() == 0, service.output()

    report = evaluate(build_learner(Settings()), read_csv(str(data), "label"))
    expected = report["models"]["ensemble"]
    assert dead == 0
    assert failures == [0.0] * len(failures)
    assert served is not None and abs(served - expected["accuracy"]) <= 1e-9
    assert recall is not None and abs(recall - expected["recall"]["north-dark"]) <= 1e-9
    # 4 classes (chance 0.25), a fifth of the cells that decide the label empty: it learned
    assert expected["accuracy"] > 0.7
