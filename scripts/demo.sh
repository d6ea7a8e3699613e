#!/usr/bin/env bash
# make demo: a local broker, the service, and Elec2 published at a steady rate. Ctrl-C stops
# everything this script started (a broker that was already running is left running).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
PORT=${DRIFTLINE_KAFKA_PORT:-9092}
RATE=${DRIFTLINE_DEMO_RATE:-500}
RUN=.driftline/demo
mkdir -p "$RUN"

started_broker=0
serve_pid=""
cleanup() {
  trap - INT TERM EXIT
  echo
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

cat <<MSG

  driftline is learning. Watch it:
    dashboard   http://127.0.0.1:9108/
    metrics     http://127.0.0.1:9108/metrics
    service log $RUN/serve.log

  Publishing Elec2 (45,312 events) at $RATE events/s. Ctrl-C stops everything.

MSG
"$BIN/driftline" publish --config "$RUN/driftline.toml" --dataset elec --rate "$RATE"
echo "all of Elec2 is published; the service keeps running until Ctrl-C"
wait "$serve_pid"
