"""Every route, with every role, with a key of the tenant and with a key of another tenant.

Tenant ``acme`` holds the data: an enrolled face, consented people. For each route and role, an acme key
gets what the role table (``privacy.policy.PERMISSIONS`` + the API's own actions) says: the route's
answer, or 403 ``forbidden``. A ``globex`` key aimed at acme's subjects finds nothing of acme: 404, an
empty search, or its own empty tenant; afterwards acme's data is untouched and its audit chain holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from facekeeper.api.app import ServerSettings, create_app
from facekeeper.api.auth import permitted
from facekeeper.api.runner import ThreadRunner
from facekeeper.api.tenants import Layout
from facekeeper.engine import Engine
from facekeeper.privacy.policy import ROLES
from facekeeper.service import Service
from tests.api.conftest import PURPOSE, Root, make_root
from tests.conftest import london

FACE = "emp-face-7731"
FACE_NAME = "Alice Example"
SMALL = (Path(__file__).parents[1] / "data" / "people" / "barack_obama" / "7_small.jpg").read_bytes()
PHOTO = london("001").read_bytes()


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str  # {target} is replaced by this route and role's own acme subject
    action: str | None
    ok: frozenset[int]  # acme key, allowed role
    foreign: frozenset[int]  # globex key, allowed role, aimed at acme's subject
    body: Callable[[Ctx, str], dict[str, Any]] | None = None


@dataclass
class Ctx:
    root: Root
    template: list[float]
    model_id: str
    client: TestClient


def _json(data: dict[str, Any]) -> dict[str, Any]:
    return {"json": data}


S = frozenset
ROUTES = [
    Route("health", "GET", "/v1/health", None, S({200}), S({200})),
    Route("metrics", "GET", "/v1/metrics", "metrics.read", S({200}), S({200})),
    Route("keys-list", "GET", "/v1/keys", "keys.manage", S({200}), S({200})),
    Route("keys-create", "POST", "/v1/keys", "keys.manage", S({201}), S({201}),
          lambda c, t: _json({"role": "auditor", "label": "matrix"})),
    Route("keys-revoke", "DELETE", "/v1/keys/{target}", "keys.manage", S({422}), S({422})),
    Route("detect", "POST", "/v1/detect", "detect", S({200}), S({200}),
          lambda c, t: {"files": [("image", ("p.jpg", SMALL, "image/jpeg"))], "data": {"landmarks": "5"}}),
    Route("enroll", "POST", "/v1/enroll", "enroll", S({201}), S({403}),  # globex: no consent for acme's person
          lambda c, t: {"files": [("images", ("p.jpg", PHOTO, "image/jpeg"))],
                        "data": {"subject_id": t, "purpose": PURPOSE}}),
    Route("verify", "POST", "/v1/verify", "verify", S({200}), S({404}),
          lambda c, t: _json({"template": c.template, "model_id": c.model_id, "subject_id": FACE,
                              "purpose": PURPOSE})),
    Route("identify", "POST", "/v1/identify", "identify", S({200}), S({200}),
          lambda c, t: _json({"template": c.template, "model_id": c.model_id, "purpose": PURPOSE})),
    Route("subjects", "GET", "/v1/subjects", "subject.list", S({200}), S({200})),
    Route("subject", "GET", f"/v1/subjects/{FACE}", "subject.list", S({200}), S({404})),
    Route("erase", "DELETE", "/v1/subjects/{target}", "subject.erase", S({200}), S({404})),
    Route("export", "GET", "/v1/subject-access/{target}", "subject.export", S({200}), S({404})),
    Route("consent-grant", "POST", "/v1/consents", "consent.grant", S({201}), S({201}),
          lambda c, t: _json({"subject_id": t, "purpose": PURPOSE, "method": "paper", "evidence": "form 9"})),
    Route("consent-list", "GET", "/v1/consents/{target}", "consent.list", S({200}), S({404})),
    Route("consent-withdraw", "DELETE", f"/v1/consents/{PURPOSE}/{{target}}", "consent.withdraw", S({200}),
          S({404})),
    Route("credential-issue", "POST", "/v1/credentials", "credential.issue", S({201}), S({201}),
          lambda c, t: _json({"subject_id": t, "purpose": PURPOSE, "kind": "pin"})),
    Route("credential-check", "POST", "/v1/credentials/check", "credential.check", S({403}), S({403}),
          lambda c, t: _json({"purpose": PURPOSE, "subject_id": t, "pin": "000000"})),
    Route("credential-revoke", "DELETE", "/v1/credentials/k_0000000000000000", "credential.revoke", S({422}),
          S({422})),
    Route("audit-verify", "GET", "/v1/audit/verify", "audit.verify", S({200}), S({200})),
    Route("audit-export", "GET", "/v1/audit/export", "audit.export", S({200}), S({200})),
    Route("compliance", "GET", "/v1/compliance", "compliance.report", S({200}), S({200})),
    Route("templates-coverage", "GET", "/v1/templates/coverage", "templates.coverage", S({200}), S({200})),
    Route("receipt-verify", "POST", "/v1/receipts/verify", "receipt.verify", S({422}), S({422}),
          lambda c, t: _json({"document": {"type": "facekeeper.erasure-receipt/v1", "signature": "AAAA"}})),
    Route("sweep", "POST", "/v1/sweep?dry_run=true", "sweep", S({200}), S({200})),
    Route("notice", "PUT", "/v1/notice", "notice.set", S({204}), S({204}), lambda c, t: _json({"version": "test-1"})),
]
TARGETED = [r.name for r in ROUTES if "{target}" in r.path or r.name in ("enroll", "credential-issue",
                                                                           "credential-check")]


def target(route: Route, role: str) -> str:
    return f"t-{route.name}-{role}"


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory, module_licensed: None, engine: Engine) -> Iterator[Ctx]:
    people = (FACE, *(target(r, role) for r in ROUTES if r.name in TARGETED for role in ROLES))
    root = make_root(tmp_path_factory.mktemp("matrix"), people=people)
    seed(root.layout, engine)
    descriptor, _ = engine.template(london("001", "smiling"))
    runner = ThreadRunner(root.layout, 2, engines=lambda _s: engine)
    settings = ServerSettings(in_process=True, deny_egress=False, rate=10_000, burst=10_000)
    with TestClient(create_app(root.layout, settings, runner=runner)) as client:
        yield Ctx(root, [float(x) for x in descriptor], engine.model_id, client)


def seed(layout: Layout, engine: Engine) -> None:
    svc = Service.open(layout.data_dir("acme"), engine=engine)
    svc.enroll([london("001")], FACE, FACE_NAME, purpose=PURPOSE)
    svc.close()


@pytest.fixture(scope="module")
def acme_secrets(ctx: Ctx) -> list[str]:
    """What no globex answer may contain: the name and pseudonyms of acme's people (a globex answer may
    echo the subject id globex itself sent, which tells it nothing)."""
    svc = Service.open(ctx.root.layout.data_dir("acme"))
    try:
        return [FACE_NAME, *svc.privacy.registry.people()]
    finally:
        svc.close()


@pytest.mark.parametrize("tenant", ["acme", "globex"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_route_answers_by_role_and_tenant(ctx: Ctx, acme_secrets: list[str], route: Route, role: str,
                                         tenant: str) -> None:
    aimed_at = target(route, role)
    kwargs = route.body(ctx, aimed_at) if route.body else {}
    path = route.path.replace("{target}", aimed_at)
    auth = {} if route.action is None else ctx.root.auth(tenant, role)
    r = ctx.client.request(route.method, path, headers=auth, **kwargs)
    allowed = route.action is None or permitted(role, route.action)
    if not allowed:
        assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
        return
    expected = route.ok if tenant == "acme" else route.foreign
    assert r.status_code in expected, r.text
    if r.status_code == 403:
        assert r.json()["code"] != "forbidden", r.text
    if tenant == "globex":
        text = r.text
        for secret in acme_secrets:
            assert secret not in text, f"{route.name} as globex {role} leaked {secret!r}"
    if role == "auditor" and r.status_code < 300:
        assert FACE_NAME not in r.text and FACE not in r.text  # no names, no biometrics for auditors


def test_acme_is_intact_and_its_audit_holds_after_the_matrix(ctx: Ctx) -> None:
    admin = ctx.root.auth("acme", "admin")
    shown = ctx.client.get(f"/v1/subjects/{FACE}", headers=admin)
    assert shown.status_code == 200 and shown.json()["templates"] >= 1
    assert ctx.client.get("/v1/audit/verify", headers=ctx.root.auth("acme", "auditor")).json()["ok"]
    assert ctx.client.get("/v1/audit/verify", headers=ctx.root.auth("globex", "auditor")).json()["ok"]


def test_service_refusals_are_in_the_tenants_audit_chain(ctx: Ctx) -> None:
    ctx.client.post("/v1/sweep", headers=ctx.root.auth("acme", "device"))
    export = ctx.client.get("/v1/audit/export", headers=ctx.root.auth("acme", "auditor")).json()
    refused = [e for e in export["entries"] if e["outcome"] == "refused:forbidden"]
    assert any(e["action"] == "sweep" and e["role"] == "device" and e["tenant"] == "acme" for e in refused)
    assert all(e["actor"].startswith("ak_") for e in export["entries"] if e["role"] != "admin")
    assert json.dumps(export).count(FACE_NAME) == 0


def test_a_device_key_acts_only_for_its_own_purpose(ctx: Ctx) -> None:
    gate = ctx.root.auth("acme", "device")
    body = {"template": ctx.template, "model_id": ctx.model_id}
    r = ctx.client.post("/v1/identify", headers=gate, json={**body, "purpose": "payment"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden" and r.json()["purpose"] == "payment"
    implied = ctx.client.post("/v1/identify", headers=gate, json=body)
    assert implied.status_code == 200 and implied.json()["match"]["subject_id"] == FACE
    operator = ctx.client.post("/v1/identify", headers=ctx.root.auth("acme", "operator"), json=body)
    assert operator.status_code == 422 and operator.json()["code"] == "invalid-input"  # must say why
