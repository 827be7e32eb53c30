"""Nothing leaves the host, seen at the system-call level: a full workload under ``strace -f``.

The egress guard (``facekeeper.egress``) sees only what goes through Python's ``socket`` module; onnxruntime's
native telemetry went around it (a DNS query for ``mobile.events.data.microsoft.com`` ten seconds after each
session, and a device id written under ``~/.cache``). Here every process of a real workload (``facekeeper
serve`` and its forkserver workers, the SDK and an edge terminal, ``enroll-dir`` with workers, ``eval``; see
``tests/syscall_workload.py``) is traced by the kernel's view of it: each ``connect``/``sendto``/``sendmsg``,
whatever library made it, and each call that writes a file. The test asserts that no destination is other
than loopback, that no DNS query was attempted (port 53, a resolver from ``/etc/resolv.conf``, or the
resolver sockets of systemd-resolved and nscd), and that nothing was written outside the deployment's data
and key folders, the temp folder and the report the run asked for. The home folder and the working folder
are fresh and must stay empty.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from facekeeper.service import Service
from tests.api.conftest import make_root
from tests.api.test_sdk import EXPECTED, tokens
from tests.conftest import LONDON, ready
from tests.publisher_fixtures import licensed_fixture  # noqa: F401
from tests.syscall_trace import NETWORK, WRITES, outbound, resolvers, strace_problem, written, written_outside

REPO = Path(__file__).resolve().parents[1]
IDLE_S = 15  # onnxruntime's telemetry asks DNS about 10 s after a session is made
STRACE = Path(__file__).parent / "data" / "strace"
# from the workload below with ``telemetry.switch_off`` made a no-op (the test folder shortened to /tmp/t)
TELEMETRY_TRACE = (STRACE / "telemetry.log").read_text()
CLEAN_TRACE = (STRACE / "clean.log").read_text()  # made up: what a healthy run does
RESOLVERS_TRACE = (STRACE / "resolvers.log").read_text()  # made up: host lookups through local resolver daemons


def test_the_trace_reading_catches_the_telemetry_and_passes_a_clean_run() -> None:
    """The negative control: each query the telemetry made and each file it wrote are flagged; loopback,
    netlink, Unix sockets, a user lookup through nscd and writes in the allowed folders are not."""
    assert [f.split(":", 1)[0] for f in outbound(TELEMETRY_TRACE, {"10.255.255.53"})] == ["DNS query"] * 4
    assert [f.split(":", 1)[0] for f in outbound(TELEMETRY_TRACE.replace("htons(53)", "htons(443)")
                                                 .replace(":53]", ":443]"))] == ["non-loopback destination"] * 4
    assert [f.split(":", 1)[0] for f in outbound(RESOLVERS_TRACE)] == ["DNS query (nscd)",
                                                                       "DNS query (systemd-resolved)"]
    assert [str(p) for p, _ in written(TELEMETRY_TRACE, Path("/tmp/t/cwd"))] == [
        "/tmp/t/home/.cache", "/tmp/t/home/.cache/Microsoft/DeveloperTools/.onnxruntime/onnxruntime.db"]
    assert len(written_outside(TELEMETRY_TRACE, [Path("/tmp/t/data")], Path("/tmp/t/cwd"))) == 2
    assert outbound(CLEAN_TRACE, {"10.255.255.53"}) == []
    assert [str(p) for p, _ in written(CLEAN_TRACE, Path("/elsewhere"))][:5] == [
        "/data/db/gallery.db", "/data/db/gallery.db-journal", "/data/a.tmp", "/data/a", "/dev/null"]
    assert written_outside(CLEAN_TRACE, [Path("/data")], Path("/elsewhere")) == []
    assert len(written_outside(CLEAN_TRACE, [Path("/data/db")], Path("/elsewhere"))) == 2


@pytest.mark.slow
def test_a_full_workload_sends_nothing_and_writes_only_its_own_folders(tmp_path: Path, licensed: None) -> None:
    if problem := strace_problem():
        pytest.skip(problem)
    root = make_root(tmp_path)
    site = Service.init(tmp_path / "site", tmp_path / "site-keys")
    ready(site, ())
    site.close()
    people = tmp_path / "people"
    for person in ("001", "002", "003", "004"):
        shutil.copytree(LONDON / person, people / person)
    home, cwd, out = tmp_path / "home", tmp_path / "cwd", tmp_path / "out"
    for folder in (home, cwd, out):
        folder.mkdir()
    temp = Path(tempfile.mkdtemp(prefix="fk-"))  # short: Unix socket paths of the worker pools live here
    log = tmp_path / "strace.log"
    spec = {"root": str(root.layout.root), "key_root": str(root.layout.key_root), "tokens": tokens(root),
            "site": str(tmp_path / "site"), "people": str(people), "out": str(out), "idle": IDLE_S}
    path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(temp), "PYTHONPATH": path,
           "PYTHONDONTWRITEBYTECODE": "1",  # the interpreter's own cache of the code under test, not the product
           "ORT_DISABLE_TELEMETRY": "0"}  # the workload's processes must switch it off themselves
    command = ["strace", "-f", "-qq", "--seccomp-bpf", "-yy", "-e", "signal=none", "-o", str(log),
               "-e", f"trace={','.join(NETWORK + WRITES)}", sys.executable, "-m", "tests.syscall_workload",
               json.dumps(spec)]
    try:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        trace = log.read_text()
        outside = written_outside(trace, [root.layout.root, root.layout.key_root, tmp_path / "site",
                                          tmp_path / "site-keys", temp, out], cwd)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert {k: result["service"][k] for k in EXPECTED} == EXPECTED
    assert result["bulk"] == {"subjects": 4, "templates": 8} and result["eval_pairs"] == 4
    assert result["idle_s"] >= IDLE_S
    assert "127.0.0.1" in trace and "sun_path=" in trace  # the trace saw the service's own loopback traffic
    found = outbound(trace, resolvers())
    assert not found, f"{len(found)} outbound or DNS call(s):\n" + "\n".join(found[:20])
    assert not outside, f"{len(outside)} write(s) outside the deployment:\n" + "\n".join(outside[:20])
    assert list(home.iterdir()) == [] and list(cwd.iterdir()) == []
