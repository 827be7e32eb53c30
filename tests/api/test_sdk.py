"""The SDK against a real uvicorn on 127.0.0.1: a whole site workload, and errors as the service's classes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from facekeeper.api import schemas
from facekeeper.api.app import ServerSettings
from facekeeper.api.runner import ThreadRunner
from facekeeper.api.server import BackgroundServer
from facekeeper.client import Client
from facekeeper.engine import Engine
from facekeeper.errors import BadImage, ConsentRequired, Forbidden, InvalidInput, UnknownSubject
from tests.api import workload
from tests.api.conftest import Root, make_root

EXPECTED = {"enrolled": [1, 1, 1], "identified": "w-001", "stranger": True, "verified": True,
            "edge_identified": "w-002", "edge_verified": True, "pin_accepted": True, "erased_templates": 1,
            "receipt_valid": True, "withdrawn_erased": True, "after_erase": True, "subjects": ["w-002"],
            "audit_ok": True}


@pytest.fixture
def live(tmp_path: Path, licensed: None, engine: Engine) -> Iterator[tuple[Root, str]]:
    root = make_root(tmp_path)
    runner = ThreadRunner(root.layout, 2, engines=lambda _s: engine)
    with BackgroundServer(root.layout, ServerSettings(in_process=True, deny_egress=False), runner=runner) as server:
        yield root, server.url


def tokens(root: Root, tenant: str = "acme") -> dict[str, str]:
    return {role: root.tokens[(tenant, role)] for role in ("admin", "operator", "device", "auditor")}


def test_a_days_work_through_the_sdk(live: tuple[Root, str], engine: Engine) -> None:
    root, url = live
    result = workload.run(url, tokens(root), engine)
    assert {k: result[k] for k in EXPECTED} == EXPECTED
    with Client(url, root.tokens[("acme", "auditor")]) as auditor:
        metrics = auditor.metrics()
    assert 'facekeeper_faces_processed_total{tenant="acme",operation="enroll"} 3' in metrics
    assert 'route="/v1/subjects/{subject_id}"' in metrics and "w-001" not in metrics and "Worker" not in metrics


def test_the_sdk_reads_the_answer_each_role_gets(live: tuple[Root, str]) -> None:
    """An operator gets scores and candidates; a device gets the decision alone, in its own shape."""
    root, url = live
    with Client(url, root.tokens[("acme", "operator")]) as op, Client(url, root.tokens[("acme", "device")]) as gate:
        for person in ("s-001", "s-002"):
            op.grant_consent(person, "access-control", "checkbox", "kiosk 1")
            op.enroll([workload.photo(person[2:])], person, purpose="access-control")
        seen = op.identify(workload.photo("001", "smiling"), purpose="access-control", k=2)
        told = gate.identify(workload.photo("001", "smiling"))
        checked = gate.verify(workload.photo("002", "smiling"), subject_id="s-002")
    assert isinstance(seen, schemas.Identified) and [c.subject_id for c in seen.candidates] == ["s-001", "s-002"]
    assert isinstance(told, schemas.DeviceIdentified) and told.match is not None
    assert told.match.subject_id == "s-001" and "distance" not in told.model_dump_json()
    assert isinstance(checked, schemas.DeviceVerified) and checked.match


def test_sdk_raises_the_services_own_error_classes(live: tuple[Root, str]) -> None:
    root, url = live
    with Client(url, root.tokens[("acme", "operator")]) as op, Client(url, root.tokens[("acme", "device")]) as gate:
        with pytest.raises(UnknownSubject):
            op.subject("nobody")
        with pytest.raises(ConsentRequired):
            op.enroll([workload.photo("004")], "never-consented", purpose="access-control")
        with pytest.raises(Forbidden) as info:
            gate.enroll([workload.photo("004")], "x", purpose="access-control")
        assert info.value.details["role"] == "device"
        with pytest.raises(BadImage):
            op.detect(b"not an image")
        with pytest.raises(InvalidInput):
            op.identify(workload.photo("004"))  # an operator key has no purpose of its own: say why


def test_subject_ids_with_slashes_dots_and_spaces_round_trip(live: tuple[Root, str]) -> None:
    root, url = live
    with Client(url, root.tokens[("acme", "operator")]) as op:
        for sid in ("a/b", "..", "x y?z#", "%2F"):
            op.grant_consent(sid, "access-control", "paper", "form 1")
            assert [c.purpose for c in op.consents(sid)] == ["access-control"]
            assert op.export_subject(sid)["subject"]["subject_id"] == sid
        with pytest.raises(UnknownSubject):
            op.consents("a")
