# driftline: `make demo` runs the service on Elec2, `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps lint test unit integration demo bench bench-drift bench-hostile clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Programs the tests use that pip cannot install (Java 17 and Maven for the local broker, kcat,
# prometheus/promtool for the deploy files, chromium and chromedriver for the dashboard test).
system-deps:
	scripts/system-deps.sh

# lint-imports checks the layering contracts of pyproject.toml ([tool.importlinter]).
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: install
	$(BIN)/python -m pytest tests/unit

# The broker fixture finds KAFKA_BOOTSTRAP_SERVERS, else Docker, else starts `driftline kafka up`.
integration: install system-deps
	DRIFTLINE_REQUIRE_TOOLS=1 $(BIN)/python -m pytest tests/integration

# DRIFTLINE_REQUIRE_TOOLS: a missing promtool fails the deploy-file tests instead of skipping them.
test: install system-deps lint
	DRIFTLINE_REQUIRE_TOOLS=1 $(BIN)/python -m pytest tests/unit tests/integration

demo: install
	scripts/demo.sh

# driftline against the hand-written loop (ratio), and the default ensemble against the sum of its
# members' own costs in River (ratio).
bench: install
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/ensemble_cost.py

# driftline (through `driftline evaluate`) against River's baselines on the drift suite, and the
# drift-suite section of docs/benchmarks.md. Baselines are cached in benchmarks/.cache/.
# Options: make bench-drift DRIFT_ARGS="--streams sea,elec --config my.toml" (no --write then).
DRIFT_ARGS ?= --write
bench-drift: install
	$(BIN)/python benchmarks/drift.py $(DRIFT_ARGS)

# 100,000 Elec2 events with 5% hostile messages through the broker at $KAFKA_BOOTSTRAP_SERVERS
# (default 127.0.0.1:9092, started with `driftline kafka up` if none answers); ~15 minutes.
bench-hostile: install
	$(BIN)/python benchmarks/hostile.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
