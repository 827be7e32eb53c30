"""The HTTP layer itself: keys, rate limits, body limits and problem+json, before any face work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from facekeeper.api.app import ServerSettings
from facekeeper.api.problems import MEDIA_TYPE
from facekeeper.service import Service
from tests.api.conftest import MakeClient, Root


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(MEDIA_TYPE)
    body: dict[str, Any] = r.json()
    assert body["type"] == f"urn:facekeeper:problem:{code}" and body["code"] == code and body["status"] == status
    assert body["title"] and body["detail"]
    return body


def test_health_needs_no_key_and_tells_nothing_about_tenants(client: TestClient) -> None:
    r = client.get("/v1/health")
    assert r.status_code == 200 and set(r.json()) == {"status", "version"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nonsense"}, {"X-API-Key": "fkapi1.ak_1.x"},
                                     {"Authorization": "Basic dXNlcjpwYXNz"}])
def test_missing_or_bad_keys_are_401_problems(client: TestClient, headers: dict[str, str]) -> None:
    assert_problem(client.get("/v1/keys", headers=headers), 401, "unauthorized")


def test_a_key_works_as_bearer_or_x_api_key(client: TestClient, root: Root) -> None:
    token = root.tokens[("acme", "admin")]
    assert client.get("/v1/keys", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/v1/keys", headers={"X-API-Key": token}).status_code == 200


def test_admin_manages_its_own_tenants_keys_only(client: TestClient, root: Root) -> None:
    admin = root.auth("acme", "admin")
    listed = client.get("/v1/keys", headers=admin).json()
    assert {k["tenant"] for k in listed} == {"acme"} and len(listed) == 4
    made = client.post("/v1/keys", headers=admin, json={"role": "device", "purpose": "payment", "label": "till 2"})
    assert made.status_code == 201
    new = made.json()
    assert new["key"]["tenant"] == "acme" and new["api_key"].startswith("fkapi1.")
    assert client.get("/v1/keys", headers={"Authorization": f"Bearer {new['api_key']}"}).status_code == 403
    assert_problem(client.delete(f"/v1/keys/{root.ids[('globex', 'device')]}", headers=admin), 422, "invalid-input")
    assert client.delete(f"/v1/keys/{new['key']['id']}", headers=admin).json()["revoked_at"] is not None
    assert_problem(client.get("/v1/keys", headers={"Authorization": f"Bearer {new['api_key']}"}), 401, "unauthorized")


def test_key_changes_and_receipt_checks_over_http_are_audited_once_and_refusals_too(client: TestClient,
                                                                                      root: Root) -> None:
    def entries() -> list[tuple[str, str, str]]:
        with Service.open(root.layout.data_dir("acme")) as svc:
            return [(e.actor, e.action, e.outcome) for e in svc.privacy.audit.entries()]

    admin, operator, auditor = (root.auth("acme", r) for r in ("admin", "operator", "auditor"))
    before = len(entries())
    new = client.post("/v1/keys", headers=admin, json={"role": "operator"}).json()
    assert client.post("/v1/keys", headers=operator, json={"role": "admin"}).status_code == 403
    assert client.delete(f"/v1/keys/{new['key']['id']}", headers=admin).status_code == 200
    export = client.get("/v1/audit/export", headers=auditor).json()
    assert client.post("/v1/receipts/verify", headers=auditor, json={"document": export}).json()["valid"]
    ids = {role: root.ids[("acme", role)] for role in ("admin", "operator", "auditor")}
    assert entries()[before:] == [(ids["admin"], "keys.manage", "created"),
                                  (ids["operator"], "keys.manage", "refused:forbidden"),
                                  (ids["admin"], "keys.manage", "revoked"),
                                  (ids["auditor"], "audit.export", "ok"),
                                  (ids["auditor"], "receipt.verify", "ok")]


def test_key_creation_checks_role_and_purpose(client: TestClient, root: Root) -> None:
    admin = root.auth("acme", "admin")
    assert_problem(client.post("/v1/keys", headers=admin, json={"role": "device"}), 422, "invalid-input")
    assert_problem(client.post("/v1/keys", headers=admin, json={"role": "device", "purpose": "spying"}), 422,
                   "invalid-input")
    assert_problem(client.post("/v1/keys", headers=admin, json={"role": "god"}), 422, "invalid-input")
    text = client.post("/v1/keys", headers={**admin, "Content-Type": "text/plain"}, content=b"role=admin")
    assert_problem(text, 415, "unsupported-media-type")


@pytest.mark.parametrize("role,status", [("admin", 200), ("auditor", 200), ("operator", 403), ("device", 403)])
def test_metrics_are_for_admins_and_auditors(client: TestClient, root: Root, role: str, status: int) -> None:
    r = client.get("/v1/metrics", headers=root.auth("acme", role))
    assert r.status_code == status
    if status == 200:
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "facekeeper_requests_total" in r.text and 'tenant="globex"' not in r.text


def test_metrics_label_routes_by_template_never_by_path(client: TestClient, root: Root) -> None:
    admin = root.auth("acme", "admin")
    client.delete("/v1/keys/ak_someone-s-id", headers=admin)
    text = client.get("/v1/metrics", headers=admin).text
    assert 'route="/v1/keys/{key_id}"' in text and "someone" not in text


def test_rate_limit_answers_429_with_retry_after(root: Root, make_client: MakeClient) -> None:
    with make_client(ServerSettings(in_process=True, deny_egress=False, rate=0.5, burst=2)) as c:
        device, other = root.auth("acme", "admin"), root.auth("acme", "auditor")
        assert [c.get("/v1/keys", headers=device).status_code for _ in range(2)] == [200, 200]
        body = assert_problem(c.get("/v1/keys", headers=device), 429, "rate-limited")
        assert body["retry_after"] >= 1
        assert c.get("/v1/keys", headers=device).headers["Retry-After"] == "2"
        assert c.get("/v1/metrics", headers=other).status_code == 200
        assert "facekeeper_rate_limited_total" in c.get("/v1/metrics", headers=other).text


def test_oversized_bodies_are_refused_by_length_and_while_streaming(root: Root, make_client: MakeClient) -> None:
    with make_client(ServerSettings(in_process=True, deny_egress=False, max_body_bytes=1000)) as c:
        admin = root.auth("acme", "admin")
        assert_problem(c.post("/v1/keys", headers=admin, json={"role": "auditor", "label": "x" * 2000}), 413,
                       "request-too-large")

        def chunks() -> Iterator[bytes]:
            yield b'{"role": "auditor", "label": "'
            for _ in range(20):
                yield b"x" * 100
            yield b'"}'

        r = c.post("/v1/keys", headers={**admin, "Content-Type": "application/json"}, content=chunks())
        assert_problem(r, 413, "request-too-large")
        assert len(c.get("/v1/keys", headers=admin).json()) == 4


def test_unknown_routes_and_methods_are_problems(client: TestClient, root: Root) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, "not-found")
    assert_problem(client.put("/v1/health"), 405, "method-not-allowed")
