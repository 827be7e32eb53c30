"""One small database interface over SQLite (the embedded default) and PostgreSQL (scale-out).

The gallery and privacy code write plain SQL with ``?`` placeholders, restricted to what both engines
accept (``ON CONFLICT``, ``RETURNING``, ``CAST``). This module runs it: SQLite through one connection
guarded by ``BEGIN IMMEDIATE``; PostgreSQL through a connection pool, with ``?`` rewritten to ``%s``.

Writers are serialized on both engines. SQLite does it with its write lock; on PostgreSQL every write
transaction first takes one transaction-scoped advisory lock. That costs write concurrency, and buys two
properties the rest of the code relies on: the audit chain is appended by one writer at a time (each entry
MACs the previous one), and the change log's sequence numbers commit in order, so a process that replays
``seq > last`` never skips a row committed late by a slower writer.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import psycopg
import psycopg_pool
from pgvector.psycopg import register_vector

from facekeeper.errors import ConfigError, GalleryError, StoreUnavailable

# The advisory lock every PostgreSQL write transaction holds: an arbitrary constant, the same in every process.
WRITE_LOCK = 0x66616365  # "face"


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What a transaction hands its callers: statements with ``?`` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


class Database(Protocol):
    dialect: str
    """``sqlite`` or ``postgres``."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def transaction(self) -> Any: ...

    def reclaim(self) -> None:
        """After an erasure: make the engine let go of deleted rows it still keeps (WAL, free pages)."""

    def close(self) -> None: ...


def open_private_sqlite(path: Path, schema: str) -> sqlite3.Connection:
    """A root-level SQLite file only its owner may read (API keys, console accounts): created 0600, refused
    when group or others can read it, WAL, ``schema`` applied."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    elif path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} is readable by others: run 'chmod 600 {path}'")
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(schema)
    return db


class SqliteDatabase:
    """One connection to one file: the embedded default."""

    dialect = "sqlite"

    def __init__(self, path: Path, *, synchronous: str = "NORMAL", journal_mode: str = "WAL",
                 timeout: float = 30.0) -> None:
        """``journal_mode`` DELETE keeps no copy of a deleted row once its transaction commits (the key files)."""
        self.path = path
        self.db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        self.journal_mode = str(self.db.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()[0]).upper()
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA secure_delete=ON")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self._lock = threading.RLock()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.db.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.db.executemany(sql, rows)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def reclaim(self) -> None:
        # secure_delete has zeroed the freed pages; the WAL may still hold the old ones until checkpointed
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self.db.close()


@lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` (and a literal ``%`` doubled). Our SQL has no ``?`` in strings."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Rows:
    """A finished result: rows fetched before the pooled connection went back."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[Any]:
        rest, self._next = self._rows[self._next :], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class _PgConnection:
    """A psycopg connection inside a transaction, speaking ``?``."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return _guard(lambda: self.raw.execute(to_pyformat(sql), tuple(params)))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = [tuple(r) for r in rows]
        if batch:
            _guard(lambda: self.raw.cursor().executemany(to_pyformat(sql), batch))


GONE = (psycopg.OperationalError, psycopg.InterfaceError)  # the server or the connection, not the statement


def _guard(call: Any) -> Any:
    """Turn "the server is gone" into ``StoreUnavailable`` (HTTP 503); other errors stay as they are."""
    try:
        return call()
    except GONE as exc:
        raise StoreUnavailable(f"the database is unavailable ({type(exc).__name__}): retry shortly") from None
    except psycopg_pool.PoolTimeout:
        raise StoreUnavailable("no database connection could be had in time: the database is down or"
                               " overloaded; retry shortly") from None


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database, shared by the threads of one process."""

    dialect = "postgres"

    def __init__(self, url: str, *, pool_size: int = 4, timeout: float = 10.0) -> None:
        def configure(conn: Any) -> None:
            try:
                register_vector(conn)
            except Exception:  # the extension is created by the first migration
                conn.rollback()

        self.url = url
        self._timeout = timeout
        self._local = threading.local()
        self.pool = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=max(1, pool_size), timeout=timeout, open=False,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
            configure=configure, check=psycopg_pool.ConnectionPool.check_connection,
            name="facekeeper")
        try:
            self.pool.open(wait=True, timeout=timeout)
        except psycopg_pool.PoolTimeout:
            self.pool.close()
            raise StoreUnavailable(f"cannot reach the database at {redact(url)}: is it running?") from None

    def _current(self) -> _PgConnection | None:
        return getattr(self._local, "conn", None)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        current = self._current()
        if current is not None:  # inside this thread's transaction: see its own writes
            return current.execute(sql, params)

        def run() -> _Rows:
            with self.pool.connection(timeout=self._timeout) as conn:
                cur = conn.execute(to_pyformat(sql), tuple(params))
                return _Rows(cur.fetchall() if cur.description else [], cur.rowcount)

        return _guard(run)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.transaction() as tx:
            tx.executemany(sql, rows)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """BEGIN, the write lock, ... COMMIT; rolled back on any exception. Not re-entrant, like SQLite's."""
        if self._current() is not None:
            raise GalleryError("a transaction is already open in this thread")
        with contextlib.ExitStack() as stack:
            conn = _guard(lambda: stack.enter_context(self.pool.connection(timeout=self._timeout)))
            try:
                with conn.transaction():
                    _guard(lambda: conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,)))
                    self._local.conn = _PgConnection(conn)
                    yield self._local.conn
            except GONE as exc:
                raise StoreUnavailable(f"the database went away mid-transaction ({type(exc).__name__}): nothing"
                                       " was written; retry") from None
            finally:
                self._local.conn = None

    def reclaim(self) -> None:
        """Nothing to do per erasure: PostgreSQL reuses dead rows after VACUUM (see docs/scaling.md)."""

    def close(self) -> None:
        self.pool.close()


def redact(url: str) -> str:
    """A database URL fit for a message: the password replaced."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
