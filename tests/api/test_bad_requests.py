"""Bad requests get 4xx problems, change nothing, and never take the worker process down.

The service runs its face work in a real worker process here; after every kind of bad request the same
worker answers a good one, and the gallery, consents and keys are as before.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from facekeeper.api.app import ServerSettings
from facekeeper.api.runner import ProcessRunner
from facekeeper.api.server import BackgroundServer
from facekeeper.engine import Engine
from facekeeper.service import Service
from tests.api.conftest import PURPOSE, Root, make_root
from tests.conftest import DATA, london

MAX_BODY = 4 * 1024 * 1024


def bomb_png(side: int = 20000) -> bytes:
    """A valid 20000x20000 grey PNG of a few hundred kB: 400 MB once decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    rows = b"\0" * ((side + 1) * 200)
    idat = b"".join(z.compress(rows) for _ in range(side // 200)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return bomb_png()


@pytest.fixture
def site(tmp_path: Path, licensed: None, engine: Engine) -> Iterator[tuple[Root, httpx.Client, ProcessRunner]]:
    root = make_root(tmp_path, people=("b-001", "b-late"))
    svc = Service.open(root.layout.data_dir("acme"), engine=engine)
    svc.enroll([london("001")], "b-001", "Bee One", purpose=PURPOSE)
    svc.close()
    runner = ProcessRunner(root.layout, 1)
    settings = ServerSettings(in_process=False, workers=1, deny_egress=False, max_body_bytes=MAX_BODY)
    with BackgroundServer(root.layout, settings, runner=runner) as server, \
            httpx.Client(base_url=server.url + "/v1", timeout=60, trust_env=False) as http:
        yield root, http, runner


def state(root: Root) -> dict[str, Any]:
    """Everything a bad request must leave alone."""
    svc = Service.open(root.layout.data_dir("acme"))
    try:
        return {"subjects": [(s.subject_id, s.templates) for s in svc.subjects()],
                "people": svc.privacy.registry.people(),
                "consents": [(c.id, c.ended_at) for sid in ("b-001", "b-late") for c in svc.consents(sid)],
                "templates": svc.gallery.store.template_count()}
    finally:
        svc.close()


def problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code, r.text


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_bad_requests_are_problems_that_change_nothing(site: tuple[Root, httpx.Client, ProcessRunner],
                                                       bomb: bytes) -> None:
    root, http, runner = site
    op, gate = root.auth("acme", "operator"), root.auth("acme", "device")
    good = london("001", "smiling").read_bytes()
    assert http.post("/identify", headers=gate, json={"image": b64(good)}).json()["match"]["subject_id"] == "b-001"
    workers = runner.worker_pids()
    before = state(root)
    # a consent that has just expired
    late = http.post("/consents", headers=op, json={"subject_id": "b-late", "purpose": PURPOSE, "method": "paper",
                                                    "evidence": "form 7", "expires_at": time.time() + 1.0})
    assert late.status_code == 201
    before = state(root)
    time.sleep(1.2)

    enroll = {"subject_id": "b-001", "purpose": PURPOSE}
    problem(http.post("/enroll", headers=op, json={**enroll, "images": [b64(b"x" * MAX_BODY)]}), 413,
            "request-too-large")
    problem(http.post("/enroll", headers={**op, "Content-Type": "text/plain"}, content=b"hello"), 415,
            "unsupported-media-type")
    problem(http.post("/enroll", headers={**op, "Content-Type": "image/jpeg"}, content=good), 415,
            "unsupported-media-type")
    problem(http.post("/enroll", headers=op, json={**enroll, "images": ["this is not base64!"]}), 422, "bad-image")
    problem(http.post("/enroll", headers=op, files=[("images", ("bomb.png", bomb, "image/png"))], data=enroll), 413,
            "image-too-large")
    problem(http.post("/identify", headers=gate, json={"image": b64(bomb)}), 413, "image-too-large")
    problem(http.post("/identify", headers=op, json={"image": b64(good)}), 422, "invalid-input")  # no purpose
    problem(http.post("/enroll", headers=op, json={"subject_id": "b-late", "purpose": PURPOSE, "images": [b64(good)]}),
            403, "consent-required")
    problem(http.post("/enroll", headers={**op, "Content-Type": "application/json"},
                      content=b'{"subject_id": "b-001", "images": ['), 422, "invalid-input")
    problem(http.post("/enroll", headers=op, json={**enroll, "images": [b64(good[: len(good) // 2])]}), 422,
            "bad-image")
    problem(http.post("/enroll", headers=op, json={**enroll, "images": [b64(b"GIF89a" + b"\0" * 50)]}), 422,
            "bad-image")
    problem(http.post("/enroll", headers=op, json={**enroll, "images": [b64((DATA / "multi" / "obama_and_biden.jpg")
                                                                             .read_bytes())]}), 422, "multiple-faces")
    problem(http.post("/enroll", headers=op, json={**enroll, "images": [b64(good)] * 11}), 422, "invalid-input")
    problem(http.post("/enroll", headers=op, json={**enroll, "images": [b64(good)], "colour": "blue"}), 422,
            "invalid-input")
    problem(http.post("/identify", headers=gate, json={"template": [0.1] * 128, "model_id": "other-model"}), 409,
            "model-mismatch")
    problem(http.post("/identify", headers=gate, json={"template": [0.1] * 12, "model_id": "dlib-resnet-v1"}), 422,
            "invalid-input")
    problem(http.post("/identify", headers={**gate, "Content-Type": "multipart/form-data; boundary=zz"},
                      content=b"--zz\r\nbroken"), 422, "invalid-input")

    assert state(root) == before
    assert runner.worker_pids() == workers  # the same worker, never restarted
    assert http.post("/identify", headers=gate, json={"image": b64(good)}).json()["match"]["subject_id"] == "b-001"
    assert http.get("/audit/verify", headers=root.auth("acme", "auditor")).json()["ok"]


def picture(kind: str, size: tuple[int, int] = (64, 64), frames: int = 1) -> str:
    pictures = [Image.new("RGB", size, (37 * i % 256, 255 - 37 * i % 256, 0)) for i in range(frames)]
    buf = io.BytesIO()
    pictures[0].save(buf, kind, **({"save_all": True, "append_images": pictures[1:]} if frames > 1 else {}))
    return b64(buf.getvalue())


def test_hostile_bodies_and_images_are_small_clear_problems_that_change_nothing(
        site: tuple[Root, httpx.Client, ProcessRunner]) -> None:
    root, http, runner = site
    op = root.auth("acme", "operator")
    assert http.post("/detect", headers=op, json={"image": b64(london("001").read_bytes())}).status_code == 200
    workers = runner.worker_pids()
    before = state(root)
    consent = {"subject_id": "b-new", "purpose": PURPOSE, "method": "paper", "evidence": "form 9"}
    as_json = {**op, "Content-Type": "application/json"}

    many = json.dumps({f"k{i}": 1 for i in range(300_000)}).encode()  # 3.9 MB, under this server's body limit
    assert len(many) < MAX_BODY
    r = http.post("/consents", headers=as_json, content=many)
    problem(r, 422, "invalid-input")
    assert len(r.content) < 1000  # was one error per member: 62.9 MB for a million
    r = http.post("/consents", headers=op, json={**consent, **{f"extra-{i}": "SECRET" for i in range(50)}})
    problem(r, 422, "invalid-input")
    assert len(r.json()["fields"]) == 5 and r.json()["problems"] == 50 and "SECRET" not in r.text
    deep = b'{"subject_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    problem(http.post("/consents", headers=as_json, content=deep), 422, "invalid-input")  # was a 500
    problem(http.post("/consents", headers=op, json={**consent, "subject_id": {"a": [{"b": 1}]}}), 422,
            "invalid-input")
    for expiry in (1e12, 253_402_300_800.0 + 3600, time.time() - 60):  # year 33658, year 10000, the past
        r = http.post("/consents", headers=op, json={**consent, "expires_at": expiry})
        problem(r, 422, "invalid-input")
        assert r.json()["fields"][0]["field"] == "expires_at"

    r = http.post("/detect", headers=op, json={"image": b64(london("001").read_bytes()), "landmarks": 7})
    problem(r, 422, "invalid-input")  # was a 500 from the worker
    assert r.json()["fields"] == [{"field": "landmarks", "problem": "Input should be 5 or 68"}]
    for strip in ((1, 30000), (30000, 1)):  # was a 500 from resizing
        r = http.post("/detect", headers=op, json={"image": picture("PNG", strip)})
        problem(r, 422, "bad-image")
        assert "cannot hold a face" in r.json()["detail"]
    for kind, frames in (("TIFF", 1), ("BMP", 1), ("GIF", 300), ("PNG", 3), ("WEBP", 3)):
        r = http.post("/detect", headers=op, json={"image": picture(kind, frames=frames)})
        problem(r, 422, "bad-image")
        assert r.json()["accepted"] == ["JPEG", "PNG", "WEBP"], kind

    assert state(root) == before
    assert runner.worker_pids() == workers
    assert http.get("/audit/verify", headers=root.auth("acme", "auditor")).json()["ok"]


def test_an_unexpected_error_in_a_route_is_a_500_logged_with_its_traceback_and_no_data(
        client: Any, root: Root, engine: Engine, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    secret = "-".join(("SECRET", "TEMPLATE", "0.125"))  # not on a source line a traceback shows

    def broken_engine(*_: Any, **__: Any) -> None:
        raise RuntimeError(secret)

    monkeypatch.setattr(engine, "faces", broken_engine)
    with caplog.at_level(logging.ERROR, logger="facekeeper.api"):
        r = client.post("/v1/detect", headers=root.auth("acme", "operator"),
                        json={"image": b64(london("001").read_bytes())})
    problem(r, 500, "internal-error")
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "Traceback" in logged and "in broken_engine" in logged and "RuntimeError" in logged
    assert "SECRET" not in logged and "SECRET" not in r.text


def _fail_in_worker(message: str) -> None:
    raise ValueError(message)


def test_a_worker_process_error_is_logged_with_the_worker_traceback_and_no_message(
        caplog: pytest.LogCaptureFixture) -> None:
    import asyncio
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from facekeeper.api import problems

    forged = 'could not use SECRETKEY\n  File "forged.py", line 1, in SECRETKEY'  # a message posing as a frame
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool, \
            pytest.raises(ValueError) as info:
        pool.submit(_fail_in_worker, forged).result()
    with caplog.at_level(logging.ERROR, logger="facekeeper.api"):
        asyncio.run(problems.unexpected({"method": "POST"}, info.value))
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "in the worker process" in logged and "in _fail_in_worker" in logged
    assert "raise ValueError" in logged and "\nValueError\n" in logged
    assert "SECRETKEY" not in logged and "forged.py" not in logged
