"""Door outputs on the wire: a signed webhook to a controller on loopback, OSDP to a libosdp control panel."""

from __future__ import annotations

import hmac
import json
import socket
import threading
from collections.abc import Iterator
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import osdp
import pytest

from facekeeper.egress import EgressGuard
from facekeeper.gate.doors import SIGNATURE_HEADER, TIMESTAMP_HEADER, Osdp, Webhook, credential_number
from facekeeper.service import Service
from tests.gate.conftest import ADMIN, DEVICE, DOOR

KEY = b"door-main-shared-secret"


class Controller(ThreadingHTTPServer):
    """A site's door controller: checks the signature like a real one would, and answers ``status``."""

    status = 200
    received: list[dict[str, Any]]


class Handler(BaseHTTPRequestHandler):
    server: Controller

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        timestamp = self.headers[TIMESTAMP_HEADER]
        expected = "sha256=" + hmac.new(KEY, timestamp.encode() + b"." + body, sha256).hexdigest()
        good = hmac.compare_digest(expected, self.headers[SIGNATURE_HEADER])
        self.server.received.append({"body": json.loads(body), "signed": good, "timestamp": timestamp})
        self.send_response(self.server.status if good else 401)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def controller() -> Iterator[Controller]:
    server = Controller(("127.0.0.1", 0), Handler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_webhook_is_signed_and_a_controller_that_rejects_is_reported(site: Service,
                                                                        controller: Controller) -> None:
    url = f"http://127.0.0.1:{controller.server_address[1]}/doors/main"
    pin = site.issue_credential("002", kind="pin", actor=ADMIN).secret
    with EgressGuard() as guard:  # the guard stays on: the controller is on an admitted (loopback) address
        webhook = Webhook(url, KEY, timeout=2.0)
        controller.status = 403
        refused = site.gate_credential(DOOR, subject_id="002", pin=pin, open_door=webhook, actor=DEVICE)
        controller.status = 200
        accepted = site.gate_credential(DOOR, subject_id="002", pin=pin, open_door=webhook, actor=DEVICE)
        forged = Webhook(url, b"not the key", timeout=2.0)
        site.settings.doors[DOOR].anti_passback_seconds = 0.0
        unsigned = site.gate_credential(DOOR, subject_id="002", pin=pin, open_door=forged, actor=DEVICE)
        webhook.close()
        forged.close()
    assert guard.attempts == []
    assert refused.door_answer == "rejected:403"
    assert accepted.door_answer == "accepted"  # a refused grant does not count for anti-passback
    assert unsigned.door_answer == "rejected:401"
    assert [r["signed"] for r in controller.received] == [True, True, False]
    body = controller.received[1]["body"]
    assert (body["door"], body["subject_id"], body["via"]) == (DOOR, "002", "pin") and len(body["id"]) == 32
    assert controller.received[0]["body"]["id"] != body["id"]  # each grant has its own id: a replay is visible
    answers = [e.detail["door_answer"] for e in site.privacy.audit.entries() if e.action == "gate.decide"]
    assert answers == ["rejected:403", "accepted", "rejected:401"]


def test_an_unreachable_controller_is_an_answer_not_a_crash(site: Service) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pin = site.issue_credential("001", kind="pin", actor=ADMIN).secret
    webhook = Webhook(f"http://127.0.0.1:{port}/", KEY, timeout=0.5)
    decision = site.gate_credential(DOOR, subject_id="001", pin=pin, open_door=webhook, actor=DEVICE)
    webhook.close()
    assert (decision.outcome, decision.door_answer) == ("open", "unreachable")


class SocketLine(osdp.Channel):
    """One end of an in-memory RS-485 line (a socket pair)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        sock.setblocking(False)

    def read(self, max_bytes: int) -> bytes:
        try:
            return self.sock.recv(max_bytes)
        except BlockingIOError:
            return b""

    def write(self, buf: bytes) -> int:
        return self.sock.send(buf)

    def flush(self) -> None:
        return None


def control_panel(line: osdp.Channel, key: bytes) -> osdp.ControlPanel:
    cp = osdp.ControlPanel([osdp.PDInfo(101, line, scbk=key, flags=[osdp.LibFlag.EnforceSecure])],
                           log_level=osdp.LogLevel.Emergency)
    cp.start()
    return cp


def test_osdp_sends_the_credential_number_to_a_control_panel_over_the_secure_channel(site: Service) -> None:
    ours, theirs = socket.socketpair()
    key = osdp.KeyStore.gen_key()
    reader = Osdp(SocketLine(ours), 101, key, timeout=3.0)
    cp = control_panel(SocketLine(theirs), key)
    try:
        assert cp.sc_wait_all(timeout=10) and reader.secure
        pin = site.issue_credential("003", kind="pin", actor=ADMIN).secret
        decision = site.gate_credential(DOOR, subject_id="003", pin=pin, open_door=reader, actor=DEVICE)
        assert (decision.outcome, decision.door_answer) == ("open", "sent")
        event = cp.get_event(101, timeout=3)
        while event is not None and event["event"] != osdp.Event.CardRead:
            event = cp.get_event(101, timeout=3)
        assert event is not None and int.from_bytes(event["data"], "big") == 3 and event["length"] == 32
    finally:
        cp.teardown()
        reader.close()


def test_osdp_sends_nothing_without_the_secure_channel(site: Service) -> None:
    ours, theirs = socket.socketpair()
    reader = Osdp(SocketLine(ours), 101, osdp.KeyStore.gen_key(), timeout=1.0)
    cp = control_panel(SocketLine(theirs), osdp.KeyStore.gen_key())  # another key: the channel never opens
    try:
        pin = site.issue_credential("001", kind="pin", actor=ADMIN).secret
        decision = site.gate_credential(DOOR, subject_id="001", pin=pin, open_door=reader, actor=DEVICE)
        assert decision.door_answer == "no-secure-channel"
        assert cp.get_event(101, timeout=1) is None
    finally:
        cp.teardown()
        reader.close()


def test_a_subject_id_that_is_no_number_has_no_credential_number() -> None:
    assert credential_number("000123") == 123
    assert credential_number("emp-042") is None and credential_number("99999999999") is None
    assert credential_number("١٢٣") is None  # digits, but not ASCII ones
