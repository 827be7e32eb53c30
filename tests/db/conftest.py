"""Fixtures of the PostgreSQL tests (the shared server and per-test databases are in ``tests/pg_fixtures.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from facekeeper.db.server import LocalPostgres, temporary_server
from facekeeper.errors import ConfigError


@pytest.fixture
def own_server() -> Iterator[LocalPostgres]:
    """A server of the test's own, for tests that crash or restart it."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(temporary_server())
        except ConfigError as exc:
            pytest.skip(exc.message)
        yield server
