"""Fixtures that license test deployments without the vendor's private key (which is not in the repo).

A throwaway vendor key is made once per test process and trusted as an evaluation key through
``FACEKEEPER_EVALUATION_VENDOR_KEY`` (set with monkeypatch, so nothing leaks out of a test).

- ``licensed``: every ``Service.init`` in the test (Python or ``facekeeper init``) gets a license with all
  features, so tests about other things need one line: ``pytestmark = pytest.mark.usefixtures("licensed")``.
- ``evaluation_vendor``: the vendor itself, to issue licenses with other terms.

A test module gets them with ``from tests.publisher_fixtures import evaluation_vendor_fixture, licensed``
(a ``_fixture`` name keeps ruff's F811 quiet where the fixture is also a parameter); ``tests/conftest.py``
can import them once for every test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from facekeeper.bundle.trust import ENV_EVALUATION_KEY
from facekeeper.publisher.testing import EvaluationVendor, install_test_license, shared_vendor
from facekeeper.service import Service


@pytest.fixture(name="evaluation_vendor")
def evaluation_vendor_fixture(monkeypatch: pytest.MonkeyPatch) -> EvaluationVendor:
    """A throwaway vendor (one per test process) whose licenses this test's deployments accept."""
    vendor = shared_vendor()
    monkeypatch.setenv(ENV_EVALUATION_KEY, str(vendor.public_path))
    return vendor


@pytest.fixture(name="licensed")
def licensed_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Deployments created during the test come with a full evaluation license installed."""
    vendor = shared_vendor()
    monkeypatch.setenv(ENV_EVALUATION_KEY, str(vendor.public_path))
    create = Service.init.__func__  # type: ignore[attr-defined]

    def init(cls: type[Service], *args: Any, **kwargs: Any) -> Service:
        svc = create(cls, *args, **kwargs)
        install_test_license(svc, vendor=vendor)
        return svc

    monkeypatch.setattr(Service, "init", classmethod(init))
    yield


licensed = licensed_fixture  # both import names are in use; the fixture is "licensed" either way
