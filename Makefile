# Two commands: `make demo` and `make test`. Each creates .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export LITELLM_LOCAL_MODEL_COST_MAP := True
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test install install-dev prometheus postgresql haproxy chromium node-clients lint typecheck pytest bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned: a CPU wheel on this machine. Asking pip for plain `torch` would pull
# a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/apprentice demo

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-dev
	$(BIN)/mypy

# Debian's Prometheus (promtool and the server) for the rule and dashboard tests: installed
# when missing and this runs as root with apt; otherwise those tests skip and say what to run.
prometheus:
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; \
	    pkill -x prometheus || true; \
	  else \
	    echo "note: promtool and prometheus are missing: 'sudo apt-get install prometheus' runs the Prometheus tests"; \
	  fi; \
	fi

# Debian's PostgreSQL (initdb, postgres) for the control plane tests, which start their own
# server: installed when missing and this runs as root with apt; otherwise those tests skip.
postgresql:
	@if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else \
	    echo "note: PostgreSQL is missing: 'sudo apt-get install postgresql' runs the control plane tests"; \
	  fi; \
	fi

# Debian's haproxy for the replicas-behind-one-address test: installed when missing and this
# runs as root with apt; otherwise that test skips and says what to run.
haproxy:
	@if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; \
	    pkill -x haproxy || true; \
	  else \
	    echo "note: haproxy is missing: 'sudo apt-get install haproxy' runs the load-balancer test"; \
	  fi; \
	fi

# Debian's Chromium for the console's browser tests (Playwright, from the dev extra, drives it;
# Playwright's own browser download is never used): installed when missing and this runs as
# root with apt; otherwise those tests skip and say what to run.
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "note: chromium is missing: 'sudo apt-get install chromium' runs the console's browser tests"; \
	  fi; \
	fi

# The Vercel AI SDK for the Node client test, when npm is here (else that test says what to run).
tests/node/node_modules/.package-lock.json: tests/node/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd tests/node && npm ci --no-audit --no-fund --loglevel=error; \
	else echo "note: npm is missing: the Node client test will skip"; fi

node-clients: tests/node/node_modules/.package-lock.json

pytest: install-dev prometheus postgresql haproxy chromium node-clients
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

bench: install-dev
	$(BIN)/python bench/proxy_overhead.py
	$(BIN)/python bench/teacher_client.py
	$(BIN)/python bench/capture_throughput.py
	$(BIN)/python bench/curation_throughput.py
	$(BIN)/python bench/student_latency.py
	$(BIN)/python bench/distill_quality.py
	$(BIN)/python bench/control_plane.py
	$(BIN)/python bench/store_sync.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
