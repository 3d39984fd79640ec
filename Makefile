# `make run` and `make test` work on a fresh machine: they create .venv, install
# the Python and Debian packages they need, and start what the tests need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two installs: what running needs (`make run`), then the test, dev and bench extras on top
# (every other target).  -qq also hides the warnings of the machine's pip configuration.
RUN_STAMP := $(VENV)/.run-stamp
DEV_STAMP := $(VENV)/.dev-stamp

.PHONY: run test test-lowest coverage lint typecheck fmt bench system-deps clean

$(RUN_STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -qq --upgrade pip
	@$(BIN)/pip install -qq -e .
	@touch $@

$(DEV_STAMP): $(RUN_STAMP)
	$(BIN)/pip install -qq -e '.[test,dev,bench]'
	touch $@

system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v shellcheck >/dev/null || missing="$$missing shellcheck"; \
	[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing="$$missing fonts-wqy-microhei"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# The hub in the foreground (Ctrl-C stops it), on the embedded SQLite store in ./var/.
run: $(RUN_STAMP)
	@mkdir -p var
	@echo "hub: open http://$${HUB_HOST:-127.0.0.1}:$${HUB_PORT:-8000}/"
	@echo "hubctl: $(BIN)/hubctl, or type hubctl after: export PATH=\"$(CURDIR)/$(BIN):\$$PATH\""
	@exec $(BIN)/deploy-hub

test: $(DEV_STAMP) system-deps
	$(BIN)/pytest

# The oldest releases setup.cfg allows, in a virtualenv of their own: every direct dependency
# of the hub and of the test tools at its declared minimum (scripts/lowest_constraints.py),
# what those need at its newest, then the unit and integration layers.  The test tools'
# minimums all run on Python 3.11, so they are pinned low too; a library required by both
# takes the higher minimum (websocket-client: the tests' 1.9.1, not hubctl's 1.0).
# From a fresh clone it took 1 min 13 s to 2 min 21 s here (tests 51-79 s, the rest installing).
LOWEST := .venv-lowest
LOWEST_STAMP := $(LOWEST)/.installed-stamp

$(LOWEST_STAMP): setup.cfg pyproject.toml scripts/lowest_constraints.py
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/pip install -qq --upgrade pip
	$(PYTHON) scripts/lowest_constraints.py test > $(LOWEST)/constraints.txt
	$(LOWEST)/bin/pip install -qq -c $(LOWEST)/constraints.txt -e '.[test]'
	touch $@

test-lowest: $(LOWEST_STAMP) system-deps
	$(LOWEST)/bin/pytest tests/unit tests/integration

# The whole suite with branch coverage, gunicorn's workers included (coverage follows the
# subprocesses and forks the end-to-end tests start); fails under 90 %.
coverage: $(DEV_STAMP) system-deps
	$(BIN)/pytest --cov --cov-report=term-missing:skip-covered --cov-fail-under=90

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

fmt: $(DEV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(DEV_STAMP) system-deps
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/deflate.py
	$(BIN)/python bench/fanout_redis.py
	$(BIN)/python bench/redis_parser.py
	$(BIN)/python bench/soak.py --seconds 180
	$(BIN)/python bench/reads.py
	$(BIN)/python bench/logs.py
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/log_file.py

clean:
	rm -rf $(VENV) $(LOWEST) var .pytest_cache .mypy_cache .ruff_cache
