"""Shared fixtures: real photos from tests/data, one engine per session, throwaway deployments."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from facekeeper.config import EngineSettings
from facekeeper.engine import Engine
from facekeeper.service import Service

DATA = Path(__file__).parent / "data"
LONDON = DATA / "london"


def london(person: str, pose: str = "neutral") -> Path:
    return LONDON / person / f"{pose}.jpg"


@pytest.fixture(scope="session")
def engine() -> Engine:
    """One engine for the whole run: models load once."""
    return Engine(EngineSettings())


@pytest.fixture
def deployment(tmp_path: Path, engine: Engine) -> Iterator[Service]:
    """A fresh deployment whose key lives in a separate directory, as in production."""
    svc = Service.init(tmp_path / "data", tmp_path / "keys")
    svc.engine = engine
    yield svc
    svc.close()
