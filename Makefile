# Two entry points: `make demo` and `make test`. Each creates .venv on first use and installs what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

FLOWER_VENV := .venv-flower
FLOWER_REQS := src/facekeeper/publisher/flower_app/requirements.txt

.PHONY: demo test lint clean flower-env federation-demo

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.demo-installed

# Flower (federated calibration) pins older protobuf/typer/rich/fastapi than facekeeper, so it gets its own
# environment; facekeeper only starts its programs (docs/federation.md).
$(FLOWER_VENV)/.installed: $(FLOWER_REQS)
	$(PYTHON) -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/python -m pip install -q --upgrade pip
	$(FLOWER_VENV)/bin/python -m pip install -q -r $(FLOWER_REQS)
	touch $@

flower-env: $(FLOWER_VENV)/.installed

# one federated round between two local sites (about a minute; not part of `make demo`)
federation-demo: $(VENV)/.demo-installed flower-env
	rm -rf federation-demo
	$(PY) bench/federation.py --demo --workdir federation-demo

demo: $(VENV)/.demo-installed
	$(PY) -m facekeeper.demo --images tests/data --workdir demo-deployment

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests bench

test: lint flower-env
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) $(FLOWER_VENV) demo-deployment federation-demo .pytest_cache .ruff_cache
