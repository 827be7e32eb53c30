"""Shared fixtures: real photos from tests/data, one engine per session, throwaway deployments."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from facekeeper.config import EngineSettings
from facekeeper.engine import Engine
from facekeeper.privacy import ConsentForm
from facekeeper.service import Service

pytest_plugins = ["tests.pg_fixtures"]  # pg_server, pg_url: a real PostgreSQL + pgvector

DATA = Path(__file__).parent / "data"
LONDON = DATA / "london"


def london(person: str, pose: str = "neutral") -> Path:
    return LONDON / person / f"{pose}.jpg"


NOTICE = {"version": "test-1", "controller": "Test Site Ltd", "contact": "privacy@test.invalid",
          "retention": "Until withdrawal, 3 years unused, 3 years at most.",
          "rights": "Access, withdrawal, erasure, a PIN instead of a face."}
# Everyone the foundation tests enroll, consented for the default purpose (access-control) up front.
CONSENTED = (*sorted(p.name for p in LONDON.iterdir() if p.is_dir()), "new-person", "x")
FORM = ConsentForm("checkbox", "test kiosk")


def ready(svc: Service, people: tuple[str, ...] = CONSENTED) -> Service:
    """A deployment as a site runs it: the privacy notice filled in and these people's consent recorded."""
    svc.set_notice(**NOTICE)
    for person in people:
        svc.grant_consent(person, None, FORM)
    return svc


@pytest.fixture(scope="session")
def engine() -> Engine:
    """One engine for the whole run: models load once."""
    return Engine(EngineSettings())


@pytest.fixture
def deployment(tmp_path: Path, engine: Engine) -> Iterator[Service]:
    """A fresh deployment whose key lives in a separate directory, as in production, ready to enroll."""
    svc = Service.init(tmp_path / "data", tmp_path / "keys")
    svc.engine = engine
    ready(svc)
    yield svc
    svc.close()


def network_namespace_available() -> bool:
    """Whether an empty network namespace can be made here (``unshare -n``, with ``ip`` to raise loopback)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
