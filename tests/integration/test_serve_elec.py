"""The acceptance test of the foundation: a live service over a real broker gives exactly River's
prequential accuracy."""

from __future__ import annotations

import time
import urllib.request

from river import evaluate, metrics

from driftline.datasets import bundled
from tests.integration.support import (
    ONE_MODEL,
    Service,
    committed_offsets,
    driftline,
    free_port,
    river_logistic_regression,
    sample,
    wait_for,
    write_config,
)

N = 5000

def test_live_accuracy_equals_river_progressive_val_score(kafka_bootstrap, new_topic, tmp_path):
    topic = new_topic()
    driftline("publish", "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
              "--dataset", "elec", "--limit", str(N))
    port = free_port()
    config = write_config(
        tmp_path / "driftline.toml", kafka_bootstrap, topic, port, models=ONE_MODEL
    )

    with Service(config, tmp_path / "serve.log") as service:
        wait_for(
            lambda: sample(port, "driftline_samples_learned", model="lr") == N,
            timeout=90, what=f"{N} samples learned",
        )
        live = sample(port, "driftline_prequential_accuracy", model="lr")
        served = sample(port, "driftline_prequential_accuracy", model="ensemble")
        learned = sample(port, "driftline_events_total", outcome="learned")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            assert response.status == 200  # consuming
        assert service.stop() == 0, service.output()

    reference = evaluate.progressive_val_score(
        bundled("elec", limit=N),
        river_logistic_regression(),
        metrics.Accuracy(),
    ).get()
    assert live is not None and abs(live - reference) <= 1e-9, (live, reference)
    assert served is not None and abs(served - reference) <= 1e-9
    assert learned == N
    # Offsets are committed after processing, and the shutdown commit covers every event.
    assert committed_offsets(kafka_bootstrap, f"{topic}-group", topic) == {0: N}


def test_sigterm_stops_within_ten_seconds_and_restart_continues(kafka_bootstrap, new_topic,
                                                               tmp_path):
    topic = new_topic()
    port = free_port()
    config = write_config(tmp_path / "driftline.toml", kafka_bootstrap, topic, port)
    driftline("publish", "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
              "--dataset", "elec", "--limit", "1000")
    with Service(config, tmp_path / "serve.log") as service:
        wait_for(lambda: sample(port, "driftline_events_total", outcome="learned") == 1000,
                 timeout=90, what="1000 events learned")
        assert service.stop(timeout=10) == 0
    assert "stopped after 1000 events" in service.output()

    # The restart resumes from the final checkpoint: only the new events are learned.
    driftline("publish", "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
              "--dataset", "elec", "--limit", "300")
    with Service(config, tmp_path / "serve2.log") as service:
        wait_for(lambda: (sample(port, "driftline_samples_learned", model="ensemble") or 0)
                 >= 1300, timeout=90, what="300 new events learned")
        time.sleep(2)  # anything replayed from before the restart would show up by now
        assert sample(port, "driftline_samples_learned", model="ensemble") == 1300
        assert sample(port, "driftline_events_total", outcome="learned") == 1300
        assert service.stop() == 0
