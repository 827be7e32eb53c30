"""No egress from a cluster run: Ray, its helper processes, the shards and PostgreSQL reach nothing but
loopback.

The workload (``egress_workload``) runs in a subprocess, in an empty network namespace (``unshare -n``,
loopback only) when the machine allows one, so nothing could leave even from native code; and under
``strace -f`` when it is installed, which records every ``connect``/``sendto``/``sendmsg`` of every process
the run starts, so an attempt is seen even where it would have failed (Ray's UDP probe of 8.8.8.8 sends no
packet; its cloud metadata requests go to 169.254.169.254), and any DNS query too (port 53 or a resolver).
Without ``runtime``'s settings both appear.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import network_namespace_available
from tests.syscall_trace import outbound, resolvers

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_the_trace_parser_sees_an_outbound_attempt() -> None:
    """The negative control: the lines Ray writes without our settings are flagged, loopback is not (the
    reading itself is ``tests/syscall_trace.py``, shared with the service's syscall-level test)."""
    trace = ('123 connect(6, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("8.8.8.8")}, 16) = 0\n'
             '124 connect(9, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("169.254.169.254")}, 16)\n'
             '125 connect(3, {sa_family=AF_INET, sin_port=htons(6379), sin_addr=inet_addr("127.0.0.1")}, 16) = 0\n'
             '126 connect(4, {sa_family=AF_INET6, sin6_port=htons(443), inet_pton(AF_INET6, "2001:db8::1", &s)}, 28)')
    assert len(outbound(trace)) == 3


@pytest.mark.skipif(not network_namespace_available() and shutil.which("strace") is None,
                    reason="needs unshare -n (with ip) or strace")
def test_a_cluster_run_makes_no_outbound_attempt(tmp_path: Path) -> None:
    log = tmp_path / "strace.log"
    command = [sys.executable, "-m", "tests.cluster.egress_workload", str(tmp_path / "ray")]
    if shutil.which("strace"):
        command = ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(log), *command]
    if network_namespace_available():
        command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"started_here": True, "first": 8, "erased_gone": True, "recovered_without_erased": True,
                      "guard": [],
                      "token_mode": "0o600"}
    if log.exists():
        trace = log.read_text()
        assert "AF_INET" in trace  # the trace saw the cluster's own loopback traffic
        assert outbound(trace, resolvers()) == []
