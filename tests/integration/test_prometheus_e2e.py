"""End to end through a real Prometheus (Debian's package): it scrapes a live service fed with
Elec2 every second, loads the shipped alerting rules, and every PromQL expression of the Grafana
dashboard (panels and annotations) returns data through Prometheus's HTTP API."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from consumers.kafka_io import KafkaSink
from tests.integration.support import Service, free_port, sample, wait_for, write_config

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "driftline.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
MEMBERS = ["logistic_regression", "hoeffding_adaptive_tree", "no_change"]
MODELS = "".join(f'[[models]]\nname = "{name}"\nmodel = "{name}"\n\n' for name in MEMBERS)
# What Grafana would put in place of its variables (the dashboard's own `instance`: All).
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "15m",
    "${instance}": ".*",
    "$instance": ".*",
}
BAD = [b"not json", b'{"y": 1}', b'{"x": {"a": 1}, "y": {"label": 1}}']


def dashboard_expressions() -> list[tuple[str, str]]:
    """(where, expr) of every PromQL expression in the dashboard: panel targets, annotations."""
    board = json.loads(DASHBOARD.read_text())
    found = []
    panels = list(board["panels"])
    while panels:
        panel = panels.pop(0)
        panels += panel.get("panels", [])  # panels inside collapsed rows
        for target in panel.get("targets", []):
            if target.get("expr"):
                found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for annotation in board["annotations"]["list"]:
        if annotation.get("expr"):
            found.append((f"annotation {annotation['name']!r}", annotation["expr"]))
    return found


def concrete(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
    return expr


class Prometheus:
    """`prometheus` on a loopback port with its own config and storage, stopped on exit."""

    def __init__(self, workdir: Path, target_port: int) -> None:
        exe = shutil.which("prometheus")
        if exe is None:
            pytest.fail("Prometheus is not installed: Debian's `prometheus` package is needed "
                        "(make system-deps installs it)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {json.dumps(str(ALERTS))}\n"
            "scrape_configs:\n  - job_name: driftline\n    static_configs:\n"
            f'      - targets: ["127.0.0.1:{target_port}"]\n'
        )
        self.log = workdir / "prometheus.log"
        self.args = [
            exe, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.ready, timeout=60, what=f"Prometheus ready ({self.log})")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"Prometheus exited: {self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:  # a bad expression: 400 with the reason
            raise AssertionError(f"{url}: {exc.code} {exc.read().decode()}") from None
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]


def test_every_dashboard_expression_returns_data(kafka_bootstrap, new_topic, tmp_path):
    expressions = dashboard_expressions()
    assert len(expressions) >= 10
    topic = new_topic()
    port = free_port()
    config = write_config(tmp_path / "driftline.toml", kafka_bootstrap, topic, port,
                          models=MODELS)
    sink = KafkaSink(kafka_bootstrap)  # a few malformed messages, for the dead-letter panel
    for value in BAD:
        sink.send(topic, value)
    sink.flush(timeout=30)
    sink.close()

    publisher: subprocess.Popen[bytes] | None = None
    with Service(config, tmp_path / "serve.log") as service, \
            Prometheus(tmp_path, port) as prometheus:
        try:
            wait_for(lambda: prometheus.query('up{job="driftline"} == 1'), timeout=30,
                     what="Prometheus scraping the service")
            # Events keep flowing while the expressions are queried, so that rates are not
            # zero and drifts are recent (the annotation marks the last 15 s).
            with open(tmp_path / "publish.log", "wb") as log:
                publisher = subprocess.Popen(
                    [sys.executable, "-m", "driftline", "publish", "--bootstrap-servers",
                     kafka_bootstrap, "--topic", topic, "--dataset", "elec", "--rate", "500",
                     "--loop"],
                    stdout=log, stderr=subprocess.STDOUT)
            wait_for(lambda: (sample(port, "driftline_events_total", outcome="learned") or 0)
                     >= 3000, timeout=90, what="3000 events learned")
            assert sample(port, "driftline_events_total", outcome="dead_lettered") == len(BAD)
            time.sleep(3)  # a few more scrapes

            empty = []
            for where, expr in expressions:
                query = concrete(expr)
                try:
                    result = wait_for(lambda q=query: prometheus.query(q), timeout=45,
                                      what=f"data for {where}")
                except AssertionError:
                    empty.append(f"{where}: {query}")
                    continue
                assert all("value" in series for series in result), (where, result)
            assert not empty, "no data through Prometheus for:\n" + "\n".join(empty)

            # Every model shows in the accuracy panels.
            models = {s["metric"]["model"]
                      for s in prometheus.query("driftline_prequential_accuracy")}
            assert models == {*MEMBERS, "ensemble"}
            # The dashboard's `instance` variable finds the service.
            instances = prometheus.api("label/instance/values",
                                       **{"match[]": "driftline_events_total"})
            assert f"127.0.0.1:{port}" in instances
            # The shipped alerting rules loaded and evaluate without error on live data.
            groups = prometheus.api("rules")["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            assert {rule["name"] for rule in rules} >= {
                "DriftlineAccuracyLow", "DriftlineDriftStorm", "DriftlineNoEvents",
                "DriftlineConsumerLagGrowing", "DriftlineCheckpointStale"}
            wait_for(lambda: all(rule.get("lastEvaluation", "").startswith("2")
                                 for g in prometheus.api("rules")["groups"]
                                 for rule in g["rules"]),
                     timeout=10, what="every rule evaluated")
            for group in prometheus.api("rules")["groups"]:
                for rule in group["rules"]:
                    assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
        except BaseException:
            print(service.output()[-3000:])
            print(prometheus.log.read_text()[-3000:])
            raise
        finally:
            if publisher is not None and publisher.poll() is None:
                publisher.terminate()
                publisher.wait(timeout=10)
        assert service.stop() == 0, service.output()
