#!/usr/bin/env bash
# make demo: a local broker, the service, Prometheus (when installed) and Elec2 published at a
# steady rate. Ctrl-C stops everything this script started (a broker that was already running
# is left running).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
PORT=${DRIFTLINE_KAFKA_PORT:-9092}
RATE=${DRIFTLINE_DEMO_RATE:-500}
PROMETHEUS_PORT=${DRIFTLINE_DEMO_PROMETHEUS_PORT:-9090}
RUN=.driftline/demo
mkdir -p "$RUN"

started_broker=0
serve_pid=""
prometheus_pid=""
cleanup() {
  trap - INT TERM EXIT
  echo
  if [[ -n $prometheus_pid ]] && kill -0 "$prometheus_pid" 2>/dev/null; then
    echo "stopping Prometheus (its data is kept in $RUN/prometheus)"
    kill -TERM "$prometheus_pid" 2>/dev/null || true
    wait "$prometheus_pid" 2>/dev/null || true
  fi
  if [[ -n $serve_pid ]] && kill -0 "$serve_pid" 2>/dev/null; then
    echo "stopping driftline serve"
    kill -TERM "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
  if ((started_broker)); then
    echo "stopping the Kafka broker (its data is kept)"
    "$BIN/driftline" kafka down --port "$PORT" || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM  # exit runs the EXIT trap, once

port_free() {
  "$BIN/python" -c "import socket, sys; s = socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $1)) == 0)"
}

if ! "$BIN/python" -c "import sys; from consumers.kafka_io import broker_ready; sys.exit(not broker_ready('127.0.0.1:$PORT'))"; then
  echo "starting a local Kafka broker on 127.0.0.1:$PORT (the first start downloads it with Maven)"
  "$BIN/driftline" kafka up --port "$PORT"
  started_broker=1
fi

cat >"$RUN/driftline.toml" <<TOML
[kafka]
bootstrap_servers = "127.0.0.1:$PORT"
topic = "events"
TOML

"$BIN/driftline" serve --config "$RUN/driftline.toml" >"$RUN/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 50); do
  curl -fs http://127.0.0.1:9108/healthz >/dev/null 2>&1 && break
  kill -0 "$serve_pid" 2>/dev/null || { cat "$RUN/serve.log"; exit 1; }
  sleep 0.2
done

# Prometheus, if installed (Debian: apt-get install prometheus), with the shipped alerting rules.
prometheus_line="    Prometheus  not installed (Debian: apt-get install prometheus)"
if command -v prometheus >/dev/null; then
  if port_free "$PROMETHEUS_PORT"; then
    cat >"$RUN/prometheus.yml" <<YAML
# Written by scripts/demo.sh: scrapes the demo's service with the rules of deploy/prometheus.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - "$PWD/deploy/prometheus/alerts.yml"
scrape_configs:
  - job_name: driftline
    static_configs:
      - targets: ["127.0.0.1:9108"]
YAML
    prometheus --config.file="$RUN/prometheus.yml" --storage.tsdb.path="$RUN/prometheus" \
      --storage.tsdb.retention.time=2d --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
      >"$RUN/prometheus.log" 2>&1 &
    prometheus_pid=$!
    for _ in $(seq 50); do
      curl -fs "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" >/dev/null 2>&1 && break
      kill -0 "$prometheus_pid" 2>/dev/null || { tail -5 "$RUN/prometheus.log"; prometheus_pid=""; break; }
      sleep 0.2
    done
    if [[ -n $prometheus_pid ]]; then
      prometheus_line="    Prometheus  http://127.0.0.1:$PROMETHEUS_PORT/   (alerts: /alerts, log: $RUN/prometheus.log)"
    else
      prometheus_line="    Prometheus  did not start; see $RUN/prometheus.log"
    fi
  else
    prometheus_line="    Prometheus  not started: port $PROMETHEUS_PORT is in use (DRIFTLINE_DEMO_PROMETHEUS_PORT=N picks another)"
  fi
fi

cat <<MSG

  driftline is learning. Watch it:
    dashboard   http://127.0.0.1:9108/
    metrics     http://127.0.0.1:9108/metrics
$prometheus_line
    service log $RUN/serve.log

  Publishing Elec2 (45,312 events) at $RATE events/s. Ctrl-C stops everything.

MSG
"$BIN/driftline" publish --config "$RUN/driftline.toml" --dataset elec --rate "$RATE"
echo "all of Elec2 is published; the service keeps running until Ctrl-C"
wait "$serve_pid"
