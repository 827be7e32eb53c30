"""The subject list in one audited call, and the QR code of an alternative credential drawn on the page."""

from __future__ import annotations

import io
import re

import cv2
import numpy as np
import segno
from fastapi.testclient import TestClient
from PIL import Image

from facekeeper.api.tenants import Layout
from facekeeper.privacy import Actor
from facekeeper.privacy.retention import consent_due
from facekeeper.service import Service
from facekeeper.web import qr
from facekeeper.web.common import when
from tests.conftest import FORM as CONSENT_FORM
from tests.web.conftest import sign_in
from tests.web.test_console import CONSENT, enrol, entries

ADMIN = Actor("test", "admin")


def test_the_subject_list_is_one_audited_call_with_consent_states_and_retention_dates(client: TestClient,
                                                                                     layout: Layout) -> None:
    csrf = sign_in(client, "olga")
    for subject in ("001", "002", "003"):
        enrol(client, csrf, subject)
    before = len(entries(layout))
    html = client.get("/console/acme/subjects").text
    assert [(e.actor, e.action, e.outcome) for e in entries(layout)[before:]] == [
        ("console:olga", "subject.list", "ok")]  # not one consent listing per person
    with Service.open(layout.data_dir("acme")) as svc:
        overview = svc.subjects_overview(actor=ADMIN)
        now = svc.clock()
        for row in overview.rows:
            (consent,) = svc.privacy.ledger.of_subject(row.info.pseudonym)
            due, rule = consent_due(svc.settings, svc.privacy.ledger, consent)
            assert (row.consents[0].status, row.consents[0].due_at, row.consents[0].due_rule) == ("live", due, rule)
            assert row.erased_by == due and due > now
            assert when(due) in html and "access-control: live" in html
        two = svc.subjects_overview(2, actor=ADMIN)
    assert (overview.total, len(overview.rows), two.total, len(two.rows)) == (3, 3, 3, 2)


def test_a_withdrawn_consent_is_listed_with_its_state_and_no_retention_date(client: TestClient,
                                                                           layout: Layout) -> None:
    csrf = sign_in(client, "olga")
    enrol(client, csrf, "001")
    with Service.open(layout.data_dir("acme")) as svc:
        svc.grant_consent("001", "attendance", CONSENT_FORM, actor=ADMIN)
        svc.withdraw_consent("001", "attendance", actor=ADMIN)
        (row,) = svc.subjects_overview(actor=ADMIN).rows
    assert {c.purpose: (c.status, c.due_at is None) for c in row.consents} == {
        "access-control": ("live", False), "attendance": ("withdrawn", True)}
    assert "attendance: withdrawn" in client.get("/console/acme/subjects").text


def _qr_svg(html: str) -> str:
    found = re.search(r'<svg role="img".*?class="qr".*?</svg>', html, re.S)
    assert found, "no QR code on the page"
    return found.group(0)


def _decoded(token: str) -> str:
    """What a reader scanning ``token``'s code reads (the code the page draws, as a bitmap)."""
    buf = io.BytesIO()
    segno.make(token, error="m", micro=False).save(buf, kind="png", scale=8, border=4)
    image = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))
    # OpenCV's classic detector misreads about 1 random token in 27; the ArUco-based one read 300 of 300
    text, _, _ = cv2.QRCodeDetectorAruco().detectAndDecode(image)
    return str(text)


def test_someone_who_declines_a_face_gets_a_qr_code_of_a_token_that_opens_the_purpose(client: TestClient,
                                                                                        layout: Layout) -> None:
    csrf = sign_in(client, "olga")
    r = client.post("/console/acme/enrol", data={"csrf": csrf, "subject_id": "007", **CONSENT, "decline": "on",
                                                 "kind": "qr"})
    assert r.status_code == 200
    token = re.search(r'class="secret">([^<]+)<', r.text).group(1)  # type: ignore[union-attr]
    assert _qr_svg(r.text) == str(qr.svg(token, "QR code for access-control"))
    assert _decoded(token) == token
    with Service.open(layout.data_dir("acme")) as svc:
        subject, credential = svc.check_credential("access-control", token=token, actor=ADMIN)
    assert (subject, credential.kind) == ("007", "token")


def test_the_subject_page_issues_a_qr_code_and_an_auditor_may_not(client: TestClient, layout: Layout) -> None:
    csrf = sign_in(client, "olga")
    enrol(client, csrf, "001")
    page = client.get("/console/acme/subject?id=001").text
    assert 'action="/console/acme/subject/credential"' in page
    r = client.post("/console/acme/subject/credential", data={"csrf": csrf, "id": "001",
                                                               "purpose": "access-control", "kind": "qr"})
    assert r.status_code == 200 and "Credential issued" in r.text
    token = re.search(r'class="secret">([^<]+)<', r.text).group(1)  # type: ignore[union-attr]
    assert _qr_svg(r.text) == str(qr.svg(token, "QR code for access-control"))
    with Service.open(layout.data_dir("acme")) as svc:
        assert svc.check_credential("access-control", token=token, actor=ADMIN)[0] == "001"
    auditor = TestClient(client.app, base_url="https://testserver")
    audit_csrf = sign_in(auditor, "audrey")
    r = auditor.post("/console/acme/subject/credential", data={"csrf": audit_csrf, "id": "001",
                                                                "purpose": "access-control", "kind": "qr"})
    assert r.status_code == 403 and "<svg" not in r.text
    refused = [(e.action, e.outcome) for e in entries(layout) if e.actor == "console:audrey"]
    assert refused == [("credential.issue", "refused:forbidden")]
