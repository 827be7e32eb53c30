"""Reading an ``strace -f -yy`` log: which calls left loopback or asked a resolver, which paths were written.

Shared by the no-egress tests (``tests/test_syscall_egress.py``, ``tests/cluster/test_no_egress.py``).
Network calls count whether or not they succeeded (an attempt is the finding); file calls only when they did.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from facekeeper.egress import is_local

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
PATH = re.compile(r'"((?:[^"\\]|\\.)*)"')
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
            elif not is_local(host):
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
