"""The egress guard: loopback passes, anything else is recorded and refused before a packet leaves."""

from __future__ import annotations

import socket

import pytest

from facekeeper import egress
from facekeeper.egress import EgressBlocked, EgressGuard

TEST_NET = "192.0.2.1"  # RFC 5737 documentation range: never routed


def test_outbound_connect_dns_and_udp_are_refused_and_recorded() -> None:
    with EgressGuard() as guard:
        with pytest.raises(EgressBlocked), socket.socket() as s:
            s.connect((TEST_NET, 443))
        with pytest.raises(OSError):
            socket.create_connection(("example.com", 80), timeout=1)
        with pytest.raises(EgressBlocked), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(b"x", (TEST_NET, 53))
        with pytest.raises(EgressBlocked), socket.socket(socket.AF_INET6) as s6:
            s6.connect_ex(("2001:db8::1", 443, 0, 0))
    calls = [(a.call, a.host) for a in guard.attempts]
    assert calls == [("connect", TEST_NET), ("getaddrinfo", "example.com"), ("sendto", TEST_NET),
                     ("connect", "2001:db8::1")]
    assert egress.installed() is None


def test_every_call_that_names_a_destination_is_checked() -> None:
    """sendto with flags and sendmsg with an address send a datagram from an unconnected socket: no connect
    came first, so each must be judged on its own."""
    with EgressGuard() as guard, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        with pytest.raises(EgressBlocked):
            u.sendto(b"x", 0, (TEST_NET, 53))
        with pytest.raises(EgressBlocked):
            u.sendmsg([b"x"], [], 0, (TEST_NET, 53))
        with pytest.raises(EgressBlocked), socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as u6:
            u6.sendmsg([b"x"], [], 0, ("2001:db8::1", 53, 0, 0))
    assert [(a.call, a.host, a.port) for a in guard.attempts] == [
        ("sendto", TEST_NET, 53), ("sendmsg", TEST_NET, 53), ("sendmsg", "2001:db8::1", 53)]


def test_every_name_lookup_is_a_dns_query_and_is_checked() -> None:
    with EgressGuard() as guard:
        for lookup in (socket.gethostbyname, socket.gethostbyname_ex, socket.gethostbyaddr):
            with pytest.raises(EgressBlocked):
                lookup("example.com")
        with pytest.raises(EgressBlocked):
            socket.gethostbyaddr(TEST_NET)  # reverse: a PTR query
        with pytest.raises(EgressBlocked):
            socket.getnameinfo((TEST_NET, 443), 0)
        assert socket.getnameinfo((TEST_NET, 443), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV) == (TEST_NET,
                                                                                                       "443")
        assert socket.gethostbyname("localhost") == "127.0.0.1"
        assert socket.gethostbyname(TEST_NET) == TEST_NET  # an address: nothing to look up
    assert [(a.call, a.host) for a in guard.attempts] == [
        ("gethostbyname", "example.com"), ("gethostbyname", "example.com"), ("gethostbyaddr", "example.com"),
        ("gethostbyaddr", TEST_NET), ("getnameinfo", TEST_NET)]


def test_loopback_and_unix_sockets_pass(tmp_path: object) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    with EgressGuard() as guard:
        with socket.create_connection(("localhost", port), timeout=5):
            pass
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        a, b = socket.socketpair()
        a.close()
        b.close()
    server.close()
    assert guard.attempts == []


def test_allowed_networks_and_record_only_mode() -> None:
    with EgressGuard(allow=["192.0.2.0/24"]) as guard, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.connect((TEST_NET, 53))  # UDP connect sends nothing; allowed here
    assert guard.attempts == []
    with EgressGuard(block=False) as watcher, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.connect((TEST_NET, 53))
    assert [a.host for a in watcher.attempts] == [TEST_NET]


def test_only_one_guard_at_a_time_and_uninstall_restores_socket() -> None:
    original = socket.socket.connect
    lookups = [getattr(socket, n) for n in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr",
                                            "getnameinfo")]
    with EgressGuard():
        with pytest.raises(RuntimeError):
            EgressGuard().install()
        assert socket.socket.connect is not original and socket.gethostbyname is not lookups[1]
    assert socket.socket.connect is original
    assert [getattr(socket, f.__name__) for f in lookups] == lookups
