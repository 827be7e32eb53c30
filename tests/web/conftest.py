"""A service root with two tenants (acme, globex), console accounts of each role in acme and an admin in
globex, and an in-process app over it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from facekeeper.api.app import ServerSettings, create_app
from facekeeper.api.tenants import Layout
from facekeeper.publisher.testing import install_test_license
from facekeeper.web.accounts import AccountStore
from tests.conftest import NOTICE

PASSWORDS = {"olga": "operator-password-1", "audrey": "auditor-password-1", "ada": "admin-password-1",
             "gil": "globex-admin-pass-1"}
ROLES = {"olga": "operator", "audrey": "auditor", "ada": "admin", "gil": "admin"}


def make_root(base: Path) -> Layout:
    layout = Layout(base / "root", base / "keys")
    for tenant in ("acme", "globex"):
        svc = layout.create(tenant)
        install_test_license(svc)
        svc.set_notice(**NOTICE)
        svc.close()
    store = AccountStore.beside(layout.root)
    for name, role in ROLES.items():
        store.create("globex" if name == "gil" else "acme", name, role, PASSWORDS[name])
    store.close()
    return layout


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(client: TestClient, name: str, tenant: str = "acme") -> str:
    """Sign ``name`` in; the session's CSRF token."""
    token = csrf_of(client.get(f"/console/login?tenant={tenant}").text)
    r = client.post("/console/login", data={"csrf": token, "tenant": tenant, "username": name,
                                            "password": PASSWORDS[name]}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf_of(client.get(f"/console/{tenant}/password").text)


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return make_root(tmp_path)


@pytest.fixture
def client(layout: Layout) -> Iterator[TestClient]:
    with TestClient(create_app(layout, ServerSettings(in_process=True)), base_url="https://testserver") as c:
        yield c
