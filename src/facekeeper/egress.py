"""The egress guard: a process-wide trap on every outbound network attempt that is not loopback.

facekeeper promises that nothing leaves the premises. The code has no outbound path, and this module is
how that is checked rather than believed: it wraps ``socket.socket.connect``/``connect_ex``/``sendto``/
``sendmsg`` (the calls that name a destination: a later ``send`` goes where ``connect`` said) and the name
lookups (``getaddrinfo``, ``gethostbyname``/``_ex``, and the reverse ``gethostbyaddr``/``getnameinfo``, each a
DNS query), lets loopback and Unix sockets through, and records (and, when ``block``, refuses) everything
else. ``facekeeper serve`` installs it by default, so a dependency that one day phones home fails loudly and
shows up in ``/v1/metrics`` instead of silently sending data; the tests install it around a whole workload
and assert it saw nothing. A record holds the address family, host and port only, never payload.

It sees what goes through Python's ``socket`` module only. Native code calling libc directly (onnxruntime's
telemetry did: see ``telemetry.py``) is out of its reach; ``tests/test_syscall_egress.py`` checks that level by
tracing every ``connect``/``sendto``/``sendmsg`` and file write of a whole workload with ``strace``, and an empty
network namespace (``unshare -n``) stops it in the other no-egress tests.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LOOKUPS = ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo")
ENV_LOG = "FACEKEEPER_EGRESS_LOG"  # a file where blocked attempts are appended, one line each (for tests)


class EgressBlocked(ConnectionRefusedError):
    """An outbound connection the guard refused; an ``OSError``, so callers treat it as a network failure."""


@dataclass(frozen=True)
class Attempt:
    """One outbound attempt: what was called, and where to. No payload."""

    call: str
    family: str
    host: str
    port: int | None

    def __str__(self) -> str:
        return f"{self.call} {self.family} {self.host}:{self.port}"


def is_local(host: object, allowed: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()) -> bool:
    """Loopback (127/8, ::1, "localhost"), the unspecified address of a local bind, or an allowed network."""
    if host is None:
        return True
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name in ("localhost", "", "0.0.0.0", "::"):
        return True
    try:
        ip = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or any(ip in net for net in allowed)


class EgressGuard:
    """Install with ``install()`` (or as a context manager); ``attempts`` lists what it caught.

    ``allow`` adds networks that count as local (a PostgreSQL host on the site's own LAN, say). Installing
    is process-wide and reference-counted per guard; only one guard may be installed at a time.
    """

    _active: EgressGuard | None = None
    _install_lock = threading.Lock()

    def __init__(self, *, block: bool = True, allow: Iterable[str] = (), log_path: Path | None = None,
                 on_attempt: Callable[[Attempt], None] | None = None) -> None:
        self.block = block
        self.allow = tuple(ipaddress.ip_network(n, strict=False) for n in allow)
        self.log_path = log_path
        self.on_attempt = on_attempt
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()
        self._saved: dict[str, Any] = {}

    # -- install / uninstall --------------------------------------------------------------------
    def install(self) -> EgressGuard:
        with EgressGuard._install_lock:
            if EgressGuard._active is not None:
                raise RuntimeError("an egress guard is already installed in this process")
            cls = socket.socket
            self._saved = {"connect": cls.connect, "connect_ex": cls.connect_ex, "sendto": cls.sendto,
                           "sendmsg": cls.sendmsg,
                           **{name: getattr(socket, name) for name in _LOOKUPS}}
            guard = self
            connect, connect_ex, sendto, sendmsg = (self._saved[n] for n in ("connect", "connect_ex", "sendto",
                                                                             "sendmsg"))
            getaddrinfo, by_name, by_name_ex, by_addr, nameinfo = (self._saved[n] for n in _LOOKUPS)

            def g_connect(sock: socket.socket, address: Any) -> None:
                guard._check("connect", sock.family, address)
                return connect(sock, address)

            def g_connect_ex(sock: socket.socket, address: Any) -> int:
                guard._check("connect", sock.family, address)
                return connect_ex(sock, address)

            def g_sendto(sock: socket.socket, data: Any, *args: Any) -> int:
                guard._check("sendto", sock.family, args[-1] if args else None)
                return sendto(sock, data, *args)

            def g_sendmsg(sock: socket.socket, buffers: Any, *args: Any) -> int:
                if len(args) >= 3:
                    guard._check("sendmsg", sock.family, args[2])
                return sendmsg(sock, buffers, *args)

            def g_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
                guard._check_name("getaddrinfo", host, port)
                return getaddrinfo(host, port, *args, **kwargs)

            def g_gethostbyname(host: Any) -> Any:
                guard._check_name("gethostbyname", host)
                return by_name(host)

            def g_gethostbyname_ex(host: Any) -> Any:
                guard._check_name("gethostbyname", host)
                return by_name_ex(host)

            def g_gethostbyaddr(host: Any) -> Any:
                if not is_local(host, guard.allow):  # an address too: its name is a PTR query to DNS
                    guard._caught(Attempt("gethostbyaddr", "dns", _text(host), None))
                return by_addr(host)

            def g_getnameinfo(address: Any, flags: int) -> Any:
                host = address[0] if isinstance(address, tuple) and address else address
                if not flags & socket.NI_NUMERICHOST and not is_local(host, guard.allow):
                    guard._caught(Attempt("getnameinfo", "dns", _text(host), None))
                return nameinfo(address, flags)

            cls.connect = g_connect  # type: ignore[method-assign]
            cls.connect_ex = g_connect_ex  # type: ignore[method-assign]
            cls.sendto = g_sendto  # type: ignore[assignment]
            cls.sendmsg = g_sendmsg  # type: ignore[method-assign]
            for name, wrapper in zip(_LOOKUPS, (g_getaddrinfo, g_gethostbyname, g_gethostbyname_ex, g_gethostbyaddr,
                                                g_getnameinfo), strict=True):
                setattr(socket, name, wrapper)
            EgressGuard._active = self
        return self

    def uninstall(self) -> None:
        with EgressGuard._install_lock:
            if EgressGuard._active is not self:
                return
            cls = socket.socket
            for name in ("connect", "connect_ex", "sendto", "sendmsg"):
                setattr(cls, name, self._saved[name])
            for name in _LOOKUPS:
                setattr(socket, name, self._saved[name])
            EgressGuard._active = None

    def __enter__(self) -> EgressGuard:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    # -- checks ---------------------------------------------------------------------------------
    def _check(self, call: str, family: int, address: Any) -> None:
        if family == getattr(socket, "AF_UNIX", -1) or address is None:
            return
        host, port = (address[0], address[1]) if isinstance(address, tuple) and len(address) >= 2 else (address, None)
        if not is_local(host, self.allow):
            self._caught(Attempt(call, _family(family), _text(host), _port(port)))

    def _check_name(self, call: str, host: Any, port: Any = None) -> None:
        """A forward lookup: a name other than localhost is a DNS query; an address is the connect's to judge."""
        if not is_local(host, self.allow) and not _is_address(host):
            self._caught(Attempt(call, "dns", _text(host), _port(port)))

    def _caught(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts.append(attempt)
        if self.log_path is not None:
            fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as fh:
                fh.write(f"{attempt}\n")
        if self.on_attempt is not None:
            self.on_attempt(attempt)
        if self.block:
            raise EgressBlocked(f"outbound connection to {attempt.host}:{attempt.port} refused: facekeeper"
                                " sends nothing off the premises (see docs/deployment.md, --allow-net)")


def installed() -> EgressGuard | None:
    return EgressGuard._active


def log_path_from_env() -> Path | None:
    """``FACEKEEPER_EGRESS_LOG``: a file the service's guards (API process and workers) append attempts to."""
    path = os.environ.get(ENV_LOG)
    return Path(path) if path else None


def _is_address(host: Any) -> bool:
    try:
        ipaddress.ip_address(_text(host).split("%", 1)[0])
    except ValueError:
        return False
    return True


def _family(family: int) -> str:
    return {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}.get(family, str(family))


def _text(host: Any) -> str:
    return host.decode(errors="replace") if isinstance(host, bytes) else str(host)


def _port(port: Any) -> int | None:
    try:
        return int(port)
    except (TypeError, ValueError):
        return None
