# make test        - install what is missing, lint, run every test (what CI runs)
# make test-quick  - lint, then the unit and contract tests only: no test that starts a stack (tests/conftest.py)
# make demo  - the whole system on this machine (see README)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: test test-quick lint install demo bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# reinstall when a requirements file changes
$(VENV)/.installed: $(BIN)/activate requirements.txt requirements-dev.txt spawner/pyproject.toml
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet -e "./spawner[hub]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian's chromium for the browser tests (never a downloaded browser build)
/usr/bin/chromium:
	command -v apt-get >/dev/null || { echo "install chromium (Debian package 'chromium') first" >&2; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

install: $(VENV)/.installed node_modules/.installed /usr/bin/chromium

lint: $(VENV)/.installed
	$(BIN)/ruff check .

test: install lint
	$(BIN)/pytest

# Azurite (npm) is the only part of a stack the quick tier uses
test-quick: $(VENV)/.installed node_modules/.installed lint
	$(BIN)/pytest --quick

demo: $(VENV)/.installed node_modules/.installed
	$(PY) -m local.demo

bench: install
	$(PY) -m local.bench

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
