"""The OpenAPI document: committed in docs/openapi.json, equal to what the service serves."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from facekeeper.api import openapi

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_openapi_equals_the_generated_one() -> None:
    assert json.loads(DOC.read_text()) == openapi.document(), (
        "docs/openapi.json is stale: python -m facekeeper.api.openapi > docs/openapi.json")


def test_the_service_serves_the_same_document(client: TestClient) -> None:
    served = client.get("/v1/openapi.json")
    assert served.status_code == 200 and served.json() == json.loads(DOC.read_text())


def test_every_route_is_versioned_documents_problems_and_needs_a_key_but_health() -> None:
    doc = openapi.document()
    for path, ops in doc["paths"].items():
        assert path.startswith("/v1/")
        for method, op in ops.items():
            assert "4XX" in op["responses"] and "application/problem+json" in op["responses"]["4XX"]["content"]
            if path != "/v1/health":
                assert op.get("security"), f"{method.upper()} {path} documents no API key"
    identify = doc["paths"]["/v1/identify"]["post"]["requestBody"]["content"]
    assert set(identify) == {"application/json", "multipart/form-data"}
    assert "template" in identify["application/json"]["schema"]["properties"]
    assert "template" not in identify["multipart/form-data"]["schema"]["properties"]
