# Two entry points: `make demo` and `make test`. Each creates .venv on first use and installs what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

FLOWER_VENV := .venv-flower
FLOWER_REQS := src/facekeeper/publisher/flower_app/requirements.txt

.PHONY: demo test lint clean flower-env federation-demo strace qemu-user chromium

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

# The syscall-level no-egress test (tests/test_syscall_egress.py) traces a workload with strace: installed from
# Debian when missing and this user may (root, as CI runs); otherwise that test is skipped and says why.
STRACE_DEB := 6.1-0.1
strace:
	@command -v strace >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && apt-get update -qq && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  strace=$(STRACE_DEB) || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends strace; }; } \
	  || echo "strace is not installed (needs root and apt-get): tests/test_syscall_egress.py will be skipped"

# tests/db/test_cpu.py runs the development pgvector under QEMU's Haswell (AVX2, no AVX-512), proof on any host
# that it runs on AVX2-only CPUs; installed like strace, else that one test is skipped and says why.
QEMU_DEB := 1:7.2+dfsg-7+deb12u18+b3
qemu-user:
	@command -v qemu-x86_64 >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && apt-get update -qq && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  qemu-user=$(QEMU_DEB) || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user; }; } \
	  || echo "qemu-user is not installed (needs root and apt-get): the emulated-CPU pgvector test will be skipped"

# tests/web drive the console in Debian's headless Chromium through Playwright (never 'playwright install': its
# download cannot work here); installed like strace, else those browser tests are skipped and say why.
CHROMIUM_DEB := 156.0.8078.114-1~deb12u1
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && apt-get update -qq && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  chromium=$(CHROMIUM_DEB) || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }; } \
	  || echo "chromium is not installed (needs root and apt-get): the console's browser tests will be skipped"

test: lint flower-env strace qemu-user chromium
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) $(FLOWER_VENV) demo-deployment federation-demo .pytest_cache .ruff_cache
