"""A stated age reaches the guardian rule over HTTP too: under the site's guardian age, a guardian's record."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import PURPOSE, Root

CONSENT = {"purpose": PURPOSE, "method": "paper", "evidence": "form 12"}


def test_a_stated_age_under_the_guardian_age_needs_a_guardian_over_http(client: TestClient, root: Root) -> None:
    admin = root.auth("acme", "admin")
    child = client.post("/v1/consents", headers=admin, json={**CONSENT, "subject_id": "kid-1", "age": 10})
    assert child.status_code == 403 and child.json()["code"] == "consent-required", child.text
    guarded = client.post("/v1/consents", headers=admin, json={
        **CONSENT, "subject_id": "kid-1", "age": 10,
        "guardian": {"relationship": "mother", "reference": "form G-1"}})
    assert guarded.status_code == 201 and guarded.json()["minor"] is True, guarded.text
    adult = client.post("/v1/consents", headers=admin, json={**CONSENT, "subject_id": "adult-1", "age": 30})
    assert adult.status_code == 201 and adult.json()["minor"] is False, adult.text
    assert client.post("/v1/consents", headers=admin,
                       json={**CONSENT, "subject_id": "x-1", "age": -3}).status_code == 422
