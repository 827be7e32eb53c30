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

import ast
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from facekeeper.service import Service
from tests.api.conftest import make_root
from tests.api.test_sdk import EXPECTED, tokens
from tests.conftest import LONDON, ready
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
IDLE_S = 15  # onnxruntime's telemetry asks DNS about 10 s after a session is made
NETWORK = ("connect", "sendto", "sendmsg", "sendmmsg")
WRITES = ("open", "openat", "openat2", "creat", "mkdir", "mkdirat", "rename", "renameat", "renameat2", "link",
          "linkat", "symlink", "symlinkat", "unlink", "unlinkat", "rmdir", "truncate", "mknod", "mknodat")
RESOLVED = ("/run/systemd/resolve/", "/var/run/systemd/resolve/")  # systemd-resolved: names only
NSCD = ("/run/nscd/socket", "/var/run/nscd/socket")  # glibc asks it for users too; hosts requests count
NSCD_HOST_REQUESTS = {4, 5, 6, 7, 14}  # GETHOSTBYNAME(v6), GETHOSTBYADDR(v6), GETAI in glibc's nscd-client.h
# /proc: a process's own settings; /dev/shm: multiprocessing's semaphores (sem.*) and heap arenas (pym-*),
# in memory and unlinked at once
ALWAYS_WRITABLE = re.compile(r"^(/dev/null|/proc/(self|thread-self|\d+)/.*|/dev/shm/(sem\.|pym-\d+-)[^/]+)$")

CALL = re.compile(r"^(\d+)\s+(\w+)\((.*)$")
RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (\w+) resumed>(.*)$")
INET = re.compile(r'sa_family=AF_INET, sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)')
INET6 = re.compile(r'sa_family=AF_INET6, sin6_port=htons\((\d+)\).*?inet_pton\(AF_INET6, "([^"]+)"')
UNIX = re.compile(r'sa_family=AF_UNIX, sun_path=@?"([^"]*)"')
FAMILY = re.compile(r"sa_family=(AF_\w+)")
PEER = re.compile(r"<(?:TCP|UDP)v?6?:\[[^\]]*->\[?([0-9A-Fa-f:.]+)\]?:(\d+)\]>")  # -yy: a connected socket
AT_PATH = re.compile(r'(?:AT_FDCWD|\d+)<([^<>]*)>, "([^"]*)"')
PATH = re.compile(r'"([^"]*)"')
CWD = re.compile(r"AT_FDCWD<([^<>]*)>")
RESULT = re.compile(r"\)\s+= (-?\d+)(?:<([^<>]*))?")
WRITE_FLAGS = re.compile(r"\bO_(WRONLY|RDWR|CREAT|TRUNC)\b")


def calls(trace: str) -> Iterator[tuple[int, str, str]]:
    """(pid, syscall, arguments and result) for each call, an ``<unfinished ...>`` call joined to its resumption."""
    pending: dict[tuple[int, str], str] = {}
    for line in trace.splitlines():
        if found := RESUMED.match(line):
            pid, name, rest = int(found[1]), found[2], found[3]
            yield pid, name, pending.pop((pid, name), "") + rest
        elif found := CALL.match(line):
            pid, name, rest = int(found[1]), found[2], found[3]
            if rest.endswith("<unfinished ...>"):
                pending[(pid, name)] = rest.removesuffix("<unfinished ...>")
            else:
                yield pid, name, rest


def resolvers(resolv_conf: Path = Path("/etc/resolv.conf")) -> set[str]:
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return set()
    return {parts[1] for parts in (line.split() for line in lines) if len(parts) > 1 and parts[0] == "nameserver"}


def outbound(trace: str, dns_servers: Iterable[str] = ()) -> list[str]:
    """Every network call that leaves loopback or asks a resolver, as ``reason: call``."""
    dns_servers = set(dns_servers)
    found = []
    nscd: set[tuple[int, str]] = set()  # (pid, fd) connected to nscd
    for pid, name, rest in calls(trace):
        if name not in NETWORK:
            continue
        line = f"{pid} {name}({rest}"
        fd = rest.split("<", 1)[0]
        if (pid, fd) in nscd and name == "sendto" and _nscd_request(rest) in NSCD_HOST_REQUESTS:
            found.append(f"DNS query (nscd): {line}")
        hosts = [(h, int(p)) for p, h in INET.findall(rest) + INET6.findall(rest)]
        hosts += [(h, int(p)) for h, p in PEER.findall(rest)]
        for host, port in hosts:
            if port == 53 or host in dns_servers:
                found.append(f"DNS query: {line}")
            elif not ipaddress.ip_address(host.split("%", 1)[0]).is_loopback:
                found.append(f"non-loopback destination: {line}")
        for path in UNIX.findall(rest):
            result = RESULT.search(rest)
            connected = result is not None and result[1] == "0"
            if path.startswith(RESOLVED) and connected:
                found.append(f"DNS query (systemd-resolved): {line}")
            elif path in NSCD and connected:
                nscd.add((pid, fd))
        for family in FAMILY.findall(rest):
            if family not in ("AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK", "AF_UNSPEC"):
                found.append(f"{family} socket: {line}")
    return found


def _nscd_request(rest: str) -> int | None:
    """The request type in glibc's nscd request header (int32 version, int32 type, ...), from strace's text."""
    text = PATH.search(rest)
    if text is None:
        return None
    data = ast.literal_eval(f'b"{text[1]}"')  # strace writes bytes as C escapes, which Python reads alike
    return int.from_bytes(data[4:8], "little") if len(data) >= 8 else None


def written(trace: str, start_cwd: Path) -> Iterator[tuple[Path, str]]:
    """Each path a successful call created, wrote, renamed or removed, absolute, with its call."""
    cwd: dict[int, Path] = {}
    for pid, name, rest in calls(trace):
        if seen := CWD.search(rest):
            cwd[pid] = Path(seen[1])
        result = RESULT.search(rest)
        if name not in WRITES or result is None or int(result[1]) < 0:
            continue
        if name.startswith(("open", "creat")):
            if name != "creat" and not WRITE_FLAGS.search(rest):
                continue
            paths = [Path(result[2])] if result[2] else [cwd.get(pid, start_cwd) / PATH.findall(rest)[0]]
        elif name.endswith("at") or name == "renameat2":
            paths = [Path(base) / rel for base, rel in AT_PATH.findall(rest)]
        else:
            paths = [cwd.get(pid, start_cwd) / p for p in PATH.findall(rest.split(") = ", 1)[0])]
        for path in paths:
            yield Path(os.path.normpath(path)), f"{pid} {name}({rest}"


def written_outside(trace: str, allowed: Iterable[Path], start_cwd: Path) -> list[str]:
    allowed = [Path(os.path.realpath(a)) for a in allowed]
    return [f"{path}: {line}" for path, line in written(trace, start_cwd)
            if not ALWAYS_WRITABLE.match(str(path)) and not any(path == a or a in path.parents for a in allowed)]


def strace_problem() -> str | None:
    """Why strace cannot trace here, or None: not installed, or ptrace refused (a container without
    CAP_SYS_PTRACE, a seccomp profile that blocks it)."""
    if shutil.which("strace") is None:
        return "strace is not installed (make test installs it with apt-get; or apt-get install strace)"
    done = subprocess.run(["strace", "-f", "-qq", "-e", "trace=none", "true"], capture_output=True, text=True)
    if done.returncode != 0:
        return f"strace cannot trace in this environment (ptrace refused?): {done.stderr.strip()[-300:]}"
    return None


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
