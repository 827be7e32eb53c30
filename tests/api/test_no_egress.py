"""No egress, proven: a full workload (enroll, identify, edge identify, erase, withdraw, sweep, audit) runs
with every outbound attempt other than loopback trapped, and there is none.

1. In-process: the service (uvicorn in a thread) and the SDK clients share this process, under an egress
   guard that records without blocking; after the workload the record is empty.
2. In an empty network namespace (``unshare -n``, loopback only), where nothing could get out even from
   native code: ``facekeeper serve`` with worker processes, its own egress guard logging to a file, and the
   same workload; it completes, and the log is empty.

What native code does below Python's ``socket`` module (onnxruntime's telemetry did) is checked at the
system-call level by ``tests/test_syscall_egress.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from facekeeper.api.app import ServerSettings
from facekeeper.api.runner import ThreadRunner
from facekeeper.api.server import BackgroundServer
from facekeeper.egress import ENV_LOG, EgressGuard
from facekeeper.engine import Engine
from tests.api import workload
from tests.api.conftest import make_root
from tests.api.test_sdk import EXPECTED, tokens
from tests.conftest import network_namespace_available

REPO = Path(__file__).resolve().parents[2]


def test_in_process_workload_makes_no_outbound_attempt(tmp_path: Path, licensed: None, engine: Engine) -> None:
    root = make_root(tmp_path)
    with EgressGuard(block=False) as guard:
        runner = ThreadRunner(root.layout, 2, engines=lambda _s: engine)
        with BackgroundServer(root.layout, ServerSettings(in_process=True), runner=runner) as server:
            result = workload.run(server.url, tokens(root), engine)
    assert {k: result[k] for k in EXPECTED} == EXPECTED
    assert guard.attempts == []


@pytest.mark.slow
@pytest.mark.skipif(not network_namespace_available(), reason="needs unshare -n (root or user namespaces) and ip")
def test_workload_in_an_empty_network_namespace_makes_no_outbound_attempt(tmp_path: Path, licensed: None) -> None:
    root = make_root(tmp_path)
    log = tmp_path / "egress.log"
    script = (f"ip link set lo up && exec {sys.executable} -m tests.api.workload "
              f"{root.layout.root} {root.layout.key_root} '{json.dumps(tokens(root))}'")
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, ENV_LOG: str(log)})
    assert done.returncode == 0, done.stderr[-3000:] + (root.layout.root / "serve.log").read_text()[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {k: result[k] for k in EXPECTED} == EXPECTED
    assert not log.exists() or log.read_text() == ""
    serve_log = (root.layout.root / "serve.log").read_text()
    assert "egress refused" not in serve_log and "worker process(es)" in serve_log


def _phone_home() -> str:
    import socket

    try:
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    except OSError as exc:
        return type(exc).__name__
    return "connected"


def test_the_trap_in_worker_processes_would_see_an_attempt(tmp_path: Path) -> None:
    """The negative control: a worker that tries to reach out is stopped, logged and counted."""
    from facekeeper.api.runner import ProcessRunner
    from facekeeper.api.tenants import Layout

    log = tmp_path / "egress.log"
    runner = ProcessRunner(Layout(tmp_path / "root", tmp_path / "keys"), 1, guard={"allow": [], "log_path": log})
    try:
        assert runner._pool.submit(_phone_home).result(timeout=60) == "EgressBlocked"
    finally:
        runner.close()
    assert "connect inet 192.0.2.1:443" in log.read_text()
    assert runner.blocked.value == 1
