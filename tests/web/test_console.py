"""The console over HTTP (in process): cookies, CSRF, tenants, and that every action is the guarded,
audited operation under the name of the person who acted."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from facekeeper.api.tenants import Layout
from facekeeper.privacy.audit import AuditEntry
from facekeeper.service import Service
from tests.conftest import london
from tests.web.conftest import csrf_of, sign_in

CONSENT = {"purposes": "access-control", "method": "signature", "evidence": "form-7", "notice_read": "on"}


def entries(layout: Layout, tenant: str = "acme") -> list[AuditEntry]:
    with Service.open(layout.data_dir(tenant)) as svc:
        return svc.privacy.audit.entries()


def enrol(client: TestClient, csrf: str, subject: str, **extra: str) -> str:
    r = client.post("/console/acme/enrol", data={"csrf": csrf, "subject_id": subject, **CONSENT, **extra},
                    files={"photos": ("p.jpg", london(subject).read_bytes(), "image/jpeg")})
    assert r.status_code == 200, re.findall(r'role="alert">(.*?)</div>', r.text, re.S)
    return r.text


def test_the_session_cookie_is_httponly_samesite_strict_and_secure_over_https(client: TestClient) -> None:
    token = csrf_of(client.get("/console/login?tenant=acme").text)
    r = client.post("/console/login", data={"csrf": token, "tenant": "acme", "username": "olga",
                                            "password": "operator-password-1"}, follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie and "Path=/console" in cookie


def test_a_post_without_the_session_csrf_token_is_refused_and_changes_nothing(client: TestClient,
                                                                              layout: Layout) -> None:
    csrf = sign_in(client, "olga")
    enrol(client, csrf, "001")
    before = len(entries(layout))
    for token in ("", "forged"):
        r = client.post("/console/acme/subject/erase", data={"csrf": token, "id": "001"})
        assert r.status_code == 403 and "security token" in r.text
    assert len(entries(layout)) == before
    assert "001" in client.get("/console/acme/subjects").text


def test_a_cookie_of_another_tenant_is_refused(client: TestClient) -> None:
    sign_in(client, "gil", "globex")
    r = client.get("/console/acme/subjects")
    assert r.status_code == 403 and "another tenant" in r.text
    r = client.get("/console/acme/audit")
    assert r.status_code == 403


def test_the_audit_names_the_person_who_acted_with_their_role(client: TestClient, layout: Layout) -> None:
    csrf = sign_in(client, "olga")
    enrol(client, csrf, "001")
    mine = [e for e in entries(layout) if e.actor == "console:olga"]
    assert [(e.action, e.role, e.outcome) for e in mine] == [("consent.grant", "operator", "ok"),
                                                              ("enroll", "operator", "ok")]


def test_an_auditor_cannot_enrol_and_the_refusal_is_audited(client: TestClient, layout: Layout) -> None:
    csrf = sign_in(client, "audrey")
    r = client.post("/console/acme/enrol", data={"csrf": csrf, "subject_id": "001", **CONSENT},
                    files={"photos": ("p.jpg", london("001").read_bytes(), "image/jpeg")})
    assert r.status_code == 403 and "auditor role may not" in r.text
    refused = [e for e in entries(layout) if e.actor == "console:audrey"]
    assert [e.outcome for e in refused] == ["refused:forbidden"]
    with Service.open(layout.data_dir("acme")) as svc:
        assert svc.gallery.store.subject_count() == 0


def test_the_enrolment_desk_needs_the_notice_read_and_a_consent(client: TestClient, layout: Layout) -> None:
    csrf = sign_in(client, "olga")
    r = client.post("/console/acme/enrol", data={"csrf": csrf, "subject_id": "001", **CONSENT, "notice_read": ""},
                    files={"photos": ("p.jpg", london("001").read_bytes(), "image/jpeg")})
    assert r.status_code == 422 and "privacy notice" in r.text
    assert not [e for e in entries(layout) if e.actor == "console:olga"]


def test_a_person_withdraws_through_their_own_page_and_the_face_is_gone(client: TestClient,
                                                                          layout: Layout) -> None:
    csrf = sign_in(client, "olga")
    page = enrol(client, csrf, "001", self_service="on")
    code = re.search(r'id="ref-code">([^<]+)<', page).group(1)  # type: ignore[union-attr]
    pin = re.search(r'id="ref-pin">([^<]+)<', page).group(1)  # type: ignore[union-attr]
    token = csrf_of(client.get("/me").text)
    home = client.post("/me", data={"csrf": token, "code": code, "pin": pin}).text
    assert "1 protected template" in home and "002" not in home
    r = client.post("/me/withdraw", data={"csrf": csrf_of(home), "purpose": "access-control"})
    assert r.status_code == 200 and "erased at once" in r.text and "facekeeper.erasure" in r.text
    with Service.open(layout.data_dir("acme")) as svc:
        assert svc.gallery.store.subject_count() == 0
    assert client.get("/me/home", follow_redirects=False).status_code == 303  # the code opens nothing now
    person = [e for e in entries(layout) if e.actor.startswith("person:")]
    assert [e.action for e in person] == ["subject.export", "consent.withdraw", "subject.erase"]


def test_a_one_time_login_from_the_cli_signs_in_once_and_asks_for_a_password(layout: Layout,
                                                                               client: TestClient) -> None:
    from typer.testing import CliRunner

    from facekeeper.cli.main import app

    out = CliRunner().invoke(app, ["console", "admin", "create", "--tenant", "acme", "--name", "root-admin",
                                   "--root", str(layout.root), "--key-root", str(layout.key_root)])
    assert out.exit_code == 0, out.output
    path = re.search(r"(/console/once/\S+)", out.output).group(1)  # type: ignore[union-attr]
    r = client.post(path, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/acme/password"
    assert client.post(path, follow_redirects=False).status_code == 401
    created = [e for e in entries(layout) if e.action == "keys.manage"]
    assert created[-1].outcome == "created"


def test_the_enrolment_desk_records_whether_the_person_allows_template_updates(client: TestClient,
                                                                               layout: Layout) -> None:
    csrf = sign_in(client, "olga")
    enrol(client, csrf, "001", template_updates="on")
    enrol(client, csrf, "002")
    with Service.open(layout.data_dir("acme")) as svc:
        allowed = {c.pseudonym: c.template_updates for c in svc.privacy.ledger.open_consents()}
        assert sorted(allowed[svc.privacy.registry.resolve(s)] for s in ("001", "002")) == [False, True]
    page = client.get("/console/acme/subject", params={"id": "001"}).text
    assert "Template updates</th>" in page and "<td>allowed</td>" in page
