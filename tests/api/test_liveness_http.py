"""Liveness over HTTP and the SDK: payment refused without a session, a session answered with a still photo as
frames is a spoof and pays nothing, a descriptor is refused for payment saying why."""

from __future__ import annotations

import base64

import httpx
from fastapi.testclient import TestClient

from facekeeper.client import Client
from facekeeper.errors import LivenessRequired
from tests.api.conftest import Root
from tests.conftest import london


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_payment_is_refused_without_a_session_and_for_a_photo_sent_as_frames(client: TestClient, root: Root) -> None:
    op = root.auth("acme", "operator")
    photo, other = london("001").read_bytes(), london("001", "smiling").read_bytes()
    pay = {"image": _b64(photo), "reference": _b64(other), "purpose": "payment"}
    refused = client.post("/v1/verify", headers=op, json=pay)
    assert refused.status_code == 403 and refused.json()["code"] == "liveness-required"

    started = client.post("/v1/liveness/sessions", headers=op, json={"purpose": "payment", "steps": 2})
    assert started.status_code == 201, started.text
    session = started.json()
    assert len(session["challenge"]) == 2 and session["step_seconds"] == 2.0
    frames = {"nonce": session["nonce"], "frames": [_b64(photo)] * 20, "times": [i / 10 for i in range(20)]}
    answered = client.post(f"/v1/liveness/sessions/{session['session_id']}/frames", headers=op, json=frames)
    assert answered.status_code == 200, answered.text
    assert answered.json()["outcome"] == "spoof" and answered.json()["reasons"] == ["still"]
    again = client.post("/v1/verify", headers=op, json={**pay, "liveness_session": session["session_id"]})
    assert again.status_code == 403 and "not live" in again.json()["detail"]

    template = client.post("/v1/verify", headers=op, json={"template": [0.01] * 128, "model_id": "dlib-resnet-v1",
                                                           "subject_id": "001", "purpose": "payment"})
    assert template.status_code == 403 and "descriptor alone cannot prove" in template.json()["detail"]


def test_the_sdk_runs_a_session(client: TestClient, root: Root) -> None:
    sdk = Client("http://testserver", root.tokens[("acme", "operator")],
                 transport=httpx.MockTransport(lambda r: _forward(client, r)))
    session = sdk.liveness_start(purpose="payment")
    photo = london("002").read_bytes()
    result = sdk.liveness_submit(session.session_id, session.nonce, [photo] * 20, [i / 10 for i in range(20)])
    assert result.outcome == "spoof"
    try:
        sdk.verify(photo, london("002", "smiling"), purpose="payment", liveness_session=session.session_id)
    except LivenessRequired as exc:
        assert exc.code == "liveness-required"
    else:
        raise AssertionError("a spoofed session paid")


def _forward(client: TestClient, request: httpx.Request) -> httpx.Response:
    r = client.request(request.method, request.url.path, content=request.content, headers=dict(request.headers))
    return httpx.Response(r.status_code, content=r.content, headers=r.headers)
