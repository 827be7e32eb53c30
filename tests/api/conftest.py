"""A service root with two tenants and a key of every role in each, plus an in-process app over it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from facekeeper.api import keys as api_keys
from facekeeper.api.app import ServerSettings, create_app
from facekeeper.api.keys import KeyStore
from facekeeper.api.runner import ThreadRunner
from facekeeper.api.tenants import Layout
from facekeeper.bundle.trust import ENV_EVALUATION_KEY
from facekeeper.engine import Engine
from facekeeper.privacy.policy import ROLES
from facekeeper.publisher.testing import install_test_license, shared_vendor
from facekeeper.service import Service
from tests.conftest import ready
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

TENANTS = ("acme", "globex")
PURPOSE = "access-control"


@dataclass
class Root:
    layout: Layout
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)  # (tenant, role) -> API key
    ids: dict[tuple[str, str], str] = field(default_factory=dict)

    def auth(self, tenant: str, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[(tenant, role)]}"}


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys made in tests use a small scrypt cost; the production parameters have a test of their own."""
    monkeypatch.setattr(api_keys, "SCRYPT", {"n": 2**10, "r": 8, "p": 1})


def make_root(base: Path, tenants: tuple[str, ...] = TENANTS, people: tuple[str, ...] = ()) -> Root:
    """Tenants with their notice filled in; ``people`` consented for access-control in the first tenant only
    (enrollment also needs the ``licensed`` fixture)."""
    layout = Layout(base / "root", base / "keyroot")
    root = Root(layout)
    for i, tenant in enumerate(tenants):
        svc = layout.create(tenant)
        ready(svc, people if i == 0 else ())
        svc.close()
    store = KeyStore(layout.api_keys_path)
    for tenant in tenants:
        for role in ROLES:
            new = store.create(tenant, role, PURPOSE if role == "device" else None, f"{role} test key")
            root.tokens[(tenant, role)], root.ids[(tenant, role)] = new.token, new.key.id
    store.close()
    return root


@pytest.fixture(scope="module")
def module_licensed() -> Iterator[None]:
    """``licensed`` for a module's shared fixtures: deployments created in the module get a license."""
    with pytest.MonkeyPatch.context() as mp:
        vendor = shared_vendor()
        mp.setenv(ENV_EVALUATION_KEY, str(vendor.public_path))
        create = Service.init.__func__  # type: ignore[attr-defined]

        def init(cls: type[Service], *args: Any, **kwargs: Any) -> Service:
            svc = create(cls, *args, **kwargs)
            install_test_license(svc, vendor=vendor)
            return svc

        mp.setattr(Service, "init", classmethod(init))
        yield


@pytest.fixture
def root(tmp_path: Path, licensed: None) -> Root:
    return make_root(tmp_path)


@pytest.fixture
def settings() -> ServerSettings:
    return ServerSettings(in_process=True, deny_egress=False, rate=1000.0, burst=1000)


MakeClient = Callable[[ServerSettings], AbstractContextManager[TestClient]]


@pytest.fixture
def make_client(root: Root, engine: Engine) -> MakeClient:
    """A TestClient over an app with these settings, Service calls in threads with the session's engine."""

    @contextmanager
    def make(settings: ServerSettings) -> Iterator[TestClient]:
        runner = ThreadRunner(root.layout, 2, engines=lambda _settings: engine)
        with TestClient(create_app(root.layout, settings, runner=runner)) as c:
            yield c

    return make


@pytest.fixture
def client(make_client: MakeClient, settings: ServerSettings) -> Iterator[TestClient]:
    with make_client(settings) as c:
        yield c
