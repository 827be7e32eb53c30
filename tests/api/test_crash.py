"""kill -9 of the service (API process and workers) in the middle of a load, then a restart: every
acknowledged enrollment is there, every acknowledged erasure is gone, and the audit chain verifies
(the same code as ``bench/service.py``'s crash run, shorter and with fewer clients). And kill -9 of the
API process alone leaves no worker running.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from facekeeper.api import lifeline
from facekeeper.api.server import ServerProcess
from facekeeper.api.tenants import Layout
from facekeeper.publisher.testing import EvaluationVendor

BENCH = Path(__file__).resolve().parents[2] / "bench" / "service.py"


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_service", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_service"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_kill_9_under_load_loses_no_acknowledged_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = bench()
    vendor = EvaluationVendor(tmp_path / "vendor")
    monkeypatch.setenv("FACEKEEPER_EVALUATION_VENDOR_KEY", str(vendor.public_path))
    outcome = service.run("crash", tmp_path / "crash", vendor, clients=4, duration=8.0, workers=1, kill_at=0.5,
                          pool=4)
    assert outcome.kill_at is not None and outcome.tally.lost["refused"] + outcome.tally.lost["cut"] > 0
    assert outcome.present_ok > 0
    assert outcome.present_missing == [] and outcome.erased_found == []
    assert outcome.audit_ok


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children...), from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_bytes().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def umask(pid: int) -> int:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("Umask:"))
    return int(line.split()[1], 8)


@pytest.mark.slow
def test_kill_9_of_the_api_process_takes_its_workers_and_fork_server_with_it(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "root", tmp_path / "keys")
    layout.root.mkdir()
    before = os.umask(0o022)
    try:
        server = ServerProcess(layout, args=["--workers", "2"], log=tmp_path / "serve.log").start()
    finally:
        os.umask(before)
    assert server.proc is not None
    try:
        children = descendants(server.proc.pid)
        assert len(children) >= 3, children  # the fork server and two workers (and the resource tracker)
        umasks = {umask(pid) for pid in {server.proc.pid, *children}}
        assert umasks == {0o077}  # whatever the umask it was started with, its files are the owner's alone
        os.kill(server.proc.pid, signal.SIGKILL)  # the API process alone, as the OOM killer would
        server.proc.wait()
        deadline = time.monotonic() + 15
        while {pid for pid in children if lifeline.alive(pid)} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert {pid for pid in children if lifeline.alive(pid)} == set()
    finally:
        server.kill()
