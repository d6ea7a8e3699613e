"""The shipped deployment files: Prometheus config and alerting rules (promtool), the rules' unit
tests, docker-compose.yml, and the Grafana dashboard and provisioning.

promtool comes with Debian's `prometheus` package (`make system-deps`). Without it these tests
are skipped, unless DRIFTLINE_REQUIRE_TOOLS is set (as `make test` does), then they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from driftline.metrics import CollectorRegistry, Metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "driftline.json"

# The metrics driftline exports (DESIGN: names are part of the contract).
EXPORTED = {
    "driftline_prequential_accuracy", "driftline_rolling_accuracy",
    "driftline_samples_learned", "driftline_samples_tested", "driftline_model_weight",
    "driftline_drift_detections_total", "driftline_last_drift_timestamp_seconds",
    "driftline_events_total", "driftline_dead_letters_total", "driftline_consumer_lag",
    "driftline_processing_latency_seconds", "driftline_batch_duration_seconds",
    "driftline_checkpoint_age_seconds", "driftline_checkpoint_duration_seconds",
    "driftline_checkpoint_restored_offset", "driftline_prequential_f1", "driftline_rolling_f1",
    "driftline_prequential_recall", "driftline_rolling_recall", "driftline_model_failures_total",
    "driftline_model_resets_total", "driftline_model_failed",
    "driftline_predictions_total", "driftline_predictions_correct_total",
}
HISTOGRAMS = {
    "driftline_processing_latency_seconds", "driftline_batch_duration_seconds",
    "driftline_checkpoint_duration_seconds",
}
SERIES = (EXPORTED - HISTOGRAMS) | {
    f"{name}{suffix}" for name in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")
}


def tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        message = f"{name} is not installed (Debian's prometheus package; make system-deps)"
        if os.environ.get("DRIFTLINE_REQUIRE_TOOLS"):
            pytest.fail(message)
        pytest.skip(message)
    return exe


def run(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def test_promtool_check_config():
    out = run(tool("promtool"), "check", "config", "deploy/prometheus/prometheus.yml").stdout
    assert "SUCCESS" in out


def test_promtool_check_rules():
    out = run(tool("promtool"), "check", "rules", "deploy/prometheus/alerts.yml").stdout
    assert re.search(r"SUCCESS: [6-9] rules found", out), out


def test_promtool_alert_unit_tests():
    """alerts_test.yml: the accuracy alert fires on a series that drops and not while accuracy
    is high; likewise the drift storm, no events, lag, stale checkpoint and down alerts."""
    out = run(tool("promtool"), "test", "rules", "deploy/prometheus/alerts_test.yml").stdout
    assert "SUCCESS" in out
    tests = (DEPLOY / "prometheus" / "alerts_test.yml").read_text()
    for alert in ("DriftlineAccuracyLow", "DriftlineDriftStorm", "DriftlineNoEvents",
                  "DriftlineConsumerLagGrowing", "DriftlineCheckpointStale"):
        assert f"alertname: {alert}" in tests


def test_alerts_cover_the_required_conditions():
    text = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    names = set(re.findall(r"- alert: (\w+)", text))
    assert names >= {"DriftlineAccuracyLow", "DriftlineDriftStorm", "DriftlineNoEvents",
                     "DriftlineConsumerLagGrowing", "DriftlineCheckpointStale"}
    assert metric_names(text) <= SERIES | {"up"}, metric_names(text) - SERIES


def test_docker_compose_config():
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed")
    out = run(exe, "--file", "docker-compose.yml", "config").stdout
    for service in ("kafka:", "driftline:", "publisher:", "prometheus:", "grafana:"):
        assert f"  {service}" in out, service
    # Prometheus gets the rules and Grafana the provisioning and dashboards from deploy/.
    assert "deploy/prometheus" in out
    assert "deploy/grafana/provisioning" in out
    assert "deploy/grafana/dashboards" in out


def test_docker_compose_publishes_ports_on_loopback_only():
    """Kafka (no authentication), the metrics port, Prometheus and Grafana must not be reachable
    from the network the host is on: every published port binds 127.0.0.1."""
    published = []
    in_ports = False
    for line in (ROOT / "docker-compose.yml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped == "ports:":
            in_ports, indent = True, len(line) - len(line.lstrip())
            continue
        if in_ports and (len(line) - len(line.lstrip()) <= indent or not stripped.startswith("-")):
            in_ports = False
        if in_ports:
            published.append(stripped.lstrip("- ").strip("\"'"))
    assert len(published) == 4, published  # kafka, driftline, prometheus, grafana
    for mapping in published:
        assert mapping.startswith("127.0.0.1:"), mapping
    assert "127.0.0.1:29092:29092" in published and "127.0.0.1:9108:9108" in published


# --- Grafana --------------------------------------------------------------------------------

def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(driftline_[a-z0-9_]+)\b", expr))


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found, todo = [], list(board["panels"])
    while todo:
        panel = todo.pop(0)
        found.append(panel)
        todo += panel.get("panels", [])
    return found


def expressions(board: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(board) for t in p.get("targets", []) if t.get("expr")]
    exprs += [a["expr"] for a in board["annotations"]["list"] if a.get("expr")]
    return exprs


def test_dashboard_references_only_exported_metrics():
    board = dashboard()
    exprs = expressions(board)
    assert len(exprs) >= 10
    used = set().union(*(metric_names(e) for e in exprs))
    assert used <= SERIES, f"not exported by driftline: {sorted(used - SERIES)}"
    for expr in exprs:
        assert metric_names(expr), f"an expression with no driftline metric: {expr}"


def test_the_exported_list_matches_the_registry():
    registry = Metrics(CollectorRegistry()).registry
    names = set()
    for family in registry.collect():
        names.add(family.name + "_total" if family.type == "counter" else family.name)
    assert names >= EXPORTED, sorted(EXPORTED - names)


def test_dashboard_shows_what_the_page_shows():
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    assert board["uid"] == "driftline"
    used = set().union(*(metric_names(e) for e in expressions(board)))
    for metric in ("driftline_prequential_accuracy", "driftline_rolling_accuracy",
                   "driftline_model_weight", "driftline_events_total", "driftline_consumer_lag",
                   "driftline_checkpoint_age_seconds", "driftline_drift_detections_total"):
        assert metric in used, metric
    drifts = [a for a in board["annotations"]["list"] if a.get("expr")]
    assert drifts and all("drift" in a["expr"] for a in drifts)
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus"


def test_grafana_provisioning_matches_the_dashboard():
    datasource = (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    assert re.search(r"^\s*uid: prometheus\s*$", datasource.read_text(), re.MULTILINE)
    assert "url: http://prometheus:9090" in datasource.read_text()
    provider = (DEPLOY / "grafana" / "provisioning" / "dashboards" / "driftline.yml").read_text()
    path = re.search(r"path: (\S+)", provider)
    assert path is not None
    compose = (ROOT / "docker-compose.yml").read_text()
    assert f"./deploy/grafana/dashboards:{path.group(1)}" in compose


def compose_services() -> dict[str, str]:
    """The text of each service of docker-compose.yml, by name (no YAML parser needed)."""
    text = (ROOT / "docker-compose.yml").read_text()
    body = text[text.index("\nservices:\n"):text.index("\nvolumes:\n")]
    blocks = re.split(r"^  ([a-z0-9-]+):\n", body, flags=re.MULTILINE)
    return dict(zip(blocks[1::2], blocks[2::2], strict=True))


def test_docker_compose_runs_two_replicas_in_the_fleet_configuration():
    """Two driftline replicas on a four-partition topic, partition scope, Kafka store: each with
    a fixed hostname (its instance id), the same configuration and the same signing key."""
    from driftline.config import load_settings

    services = compose_services()
    replicas = {n: b for n, b in services.items() if '"serve", "--config"' in b}
    assert len(replicas) == 2
    hostnames = {re.search(r"hostname: (\S+)", b).group(1) for b in replicas.values()}  # type: ignore[union-attr]
    assert len(hostnames) == 2
    volumes = [re.findall(r"^      - (\./\S+:\S+|driftline-\S+:\S+)$", b, re.MULTILINE)
               for b in replicas.values()]
    assert volumes[0] == volumes[1] and len(volumes[0]) == 2  # same config, same key folder
    assert "KAFKA_NUM_PARTITIONS: 4" in services["kafka"]
    settings = load_settings(DEPLOY / "driftline.docker.toml")
    assert (settings.checkpoint.scope, settings.checkpoint.store) == ("partition", "kafka")
    assert settings.predictions_topic == "events.predictions"
    targets = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    for name in replicas:
        assert f"{name}:9108" in targets, name
