# Two entry points: `make demo` and `make test`. Each creates .venv on first use and installs what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(PY) -m facekeeper.demo --images tests/data --workdir demo-deployment

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests bench

test: lint
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) demo-deployment .pytest_cache .ruff_cache
