# roomtape — two commands do all set-up on a fresh machine:
#   make run    install into .venv and start the server (SQLite, local disk, in-process jobs)
#   make test   install what the tests need (pip, Debian, npm), then ruff, mypy and the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test install install-test system-deps lint typecheck pytest bench clean

# uv installs the ~390 MB of wheels in seconds where pip takes over a minute even with a warm cache
# (bench/newcomer.py measures both: `make run INSTALLER=pip` is its baseline); pip only bootstraps uv inside the
# venv, so nothing outside .venv changes.
INSTALLER ?= uv
ifeq ($(INSTALLER),pip)
INSTALL_TOOL := $(BIN)/python
INSTALL := $(BIN)/pip install --quiet
else
INSTALL_TOOL := $(BIN)/uv
INSTALL := $(BIN)/uv pip install --quiet --python $(BIN)/python
endif

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BIN)/uv: | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check uv

$(VENV)/.installed: pyproject.toml | $(INSTALL_TOOL)
	$(INSTALL) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(INSTALL_TOOL)
	$(INSTALL) -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(BIN)/roomtape serve

system-deps:
	bash scripts/setup-system.sh

lint: install-test
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: install-test
	$(BIN)/mypy

pytest: install-test system-deps
	$(BIN)/pytest -q -ra --durations=25

test: install-test system-deps lint typecheck pytest

bench: install-test
	for script in bench/*.py; do $(BIN)/python "$$script" || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
