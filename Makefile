# `make run` and `make test` work on a fresh machine: they create .venv, install
# the Python and Debian packages they need, and start what the tests need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test coverage lint typecheck fmt bench system-deps clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev,bench]'
	touch $(STAMP)

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

run: $(STAMP)
	mkdir -p var
	$(BIN)/gunicorn -c python:server.gunicorn_conf 'server.app:create_app()'

test: $(STAMP) system-deps
	$(BIN)/pytest

# The whole suite with branch coverage, gunicorn's workers included (coverage follows the
# subprocesses and forks the end-to-end tests start); fails under 90 %.
coverage: $(STAMP) system-deps
	$(BIN)/pytest --cov --cov-report=term-missing:skip-covered --cov-fail-under=90

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) system-deps
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/fanout_redis.py
	$(BIN)/python bench/soak.py --seconds 180
	$(BIN)/python bench/logs.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
