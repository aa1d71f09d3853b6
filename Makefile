# Gatehouse: `make run` starts everything on the embedded default; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export DEBUG ?= 1
export HOST

.PHONY: install run test lint bench clean

$(VENV)/.installed: requirements/dev.lock package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --loglevel=error; fi
	touch $@

install: $(VENV)/.installed
	mkdir -p var

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py bootstrap_admin
	if [ -n "$$GATEHOUSE_CONFIG" ]; then $(BIN)/python manage.py apply_config "$$GATEHOUSE_CONFIG"; fi
	$(BIN)/honcho -f Procfile start -p $(PORT)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy accounts gateway billing config bench

clean:
	rm -rf $(VENV) node_modules var

# Benchmarks (docs/benchmarks.md): the emulator and Gatehouse under Daphne, each on its own core,
# loaded directly and through the gateway in interleaved rounds. BENCH_LONG=1 adds the
# 100,000-request no-growth run. `make profile` py-spies the gateway (installed on demand).
# `make bench-instructions` drives the application in-process: CPU per request, and with
# BENCH_ARGS=--valgrind instructions per request, which a noisy machine does not blur.
.PHONY: profile bench-instructions
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-instructions: install
	$(BIN)/python -m bench.instructions $(BENCH_ARGS)

profile: install
	test -x $(BIN)/py-spy || $(BIN)/python -m pip install --quiet py-spy
	$(BIN)/python -m bench --profile $(BENCH_ARGS)
