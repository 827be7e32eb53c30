"""Edge mode: the terminal computes the descriptor; only 128 numbers and a model id leave its process.

The service runs as a separate process (``facekeeper serve``); every byte this (terminal) process writes
to a socket is recorded, and none of it is the photo, a piece of it, or its base64.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from facekeeper.api import schemas
from facekeeper.api.server import ServerProcess
from facekeeper.client import Client, EdgeTerminal
from facekeeper.engine import Engine
from facekeeper.errors import InvalidInput, ModelMismatch
from facekeeper.service import Service
from tests.api.conftest import PURPOSE, Root, make_root
from tests.conftest import london


class Wiretap:
    """Records what this process sends on any socket (``send``/``sendall``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent = bytearray()
        send, sendall = socket.socket.send, socket.socket.sendall

        def rec_send(sock: socket.socket, data: Any, *args: Any) -> int:
            n: int = send(sock, data, *args)
            self.sent += bytes(data)[:n]
            return n

        def rec_sendall(sock: socket.socket, data: Any, *args: Any) -> None:
            self.sent += bytes(data)
            sendall(sock, data, *args)

        monkeypatch.setattr(socket.socket, "send", rec_send)
        monkeypatch.setattr(socket.socket, "sendall", rec_sendall)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, module_licensed: None,
           engine: Engine) -> Iterator[tuple[Root, ServerProcess]]:
    tmp_path = tmp_path_factory.mktemp("edge")
    root = make_root(tmp_path, people=("g-001", "g-002"))
    svc = Service.open(root.layout.data_dir("acme"), engine=engine)
    svc.enroll([london("001")], "g-001", purpose=PURPOSE)
    svc.enroll([london("002")], "g-002", purpose=PURPOSE)
    svc.close()
    with ServerProcess(root.layout, args=["--in-process"], log=tmp_path / "serve.log") as server:
        yield root, server


def test_the_photo_never_leaves_the_terminal_process(served: tuple[Root, ServerProcess], engine: Engine,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root, server = served
    probe = london("001", "smiling").read_bytes()
    tap = Wiretap(monkeypatch)
    with Client(server.url, root.tokens[("acme", "device")]) as gate:
        terminal = EdgeTerminal(gate, engine=engine)
        found = terminal.identify(probe)
        checked = terminal.verify(probe, "g-001")
        other = terminal.verify(probe, "g-002")
    assert found.match is not None and found.match.subject_id == "g-001"
    assert checked.match and not other.match
    assert isinstance(found, schemas.DeviceIdentified) and isinstance(checked, schemas.DeviceVerified)
    sent = bytes(tap.sent)
    assert b'"template"' in sent and engine.model_id.encode() in sent
    assert b"\xff\xd8\xff" not in sent  # no JPEG
    for i in range(0, len(probe) - 48, 997):  # no piece of the photo, raw or base64
        assert probe[i:i + 48] not in sent
    assert base64.b64encode(probe[:300])[:200] not in sent
    assert len(sent) < 6_000  # three requests of 128 numbers each, with headers: under 2 kB a call
    with Client(server.url, root.tokens[("acme", "auditor")]) as auditor:
        assert 'operation="identify"' not in auditor.metrics()  # the service processed no face


def test_descriptors_from_another_model_or_of_the_wrong_shape_are_refused(
        served: tuple[Root, ServerProcess], engine: Engine) -> None:
    root, server = served
    descriptor = engine.template(london("002", "smiling").read_bytes())[0]
    with Client(server.url, root.tokens[("acme", "device")]) as gate:
        with pytest.raises(ModelMismatch):
            gate.identify_template(descriptor, "facenet-20180408")
        with pytest.raises(InvalidInput):
            gate.identify_template(descriptor[:64], engine.model_id)
        with pytest.raises(InvalidInput):
            gate.request("POST", "/verify", headers={"Content-Type": "application/json"},
                         content=b'{"template": [' + b"NaN," * 127 + b'1.0], "model_id": "' + engine.model_id.encode()
                         + b'", "subject_id": "g-002"}')
        assert gate.verify_template(descriptor, engine.model_id, "g-002").match
