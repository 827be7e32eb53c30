"""Per-subject data keys, wrapped by the deployment key, kept in the key directory (not with the data).

Keeping the wrapped keys out of the gallery file is what makes erasure real: a backup of the gallery
taken before an erasure holds only ciphertext whose key no longer exists anywhere.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from facekeeper.db.database import Database, PostgresDatabase, SqliteDatabase
from facekeeper.errors import DeploymentKeyError, StoreUnavailable
from facekeeper.gallery.keys import DeploymentKey
from facekeeper.gallery.protect import SealError, new_data_key, open_sealed, seal

# A key with no subject in the gallery is either an enrollment in flight or the remains of a crash;
# only the latter (older than this) is removed.
ORPHAN_AGE_SECONDS = 3600.0

TABLES = ("subject_keys", "privacy_keys")


class KeyStore:
    """Create, fetch and destroy subject data keys.

    A SQLite key file runs with a rollback journal, not a WAL: a WAL keeps every page a key was written to
    until a checkpoint that any open reader can silently defeat, so an erased key would outlive its
    erasure there. With a rollback journal and ``secure_delete``, the commit that deletes a key overwrites
    it in the file and removes the journal holding the old page; a reader still inside a read makes that
    commit wait (``BUSY_TIMEOUT``) and then fail, with nothing erased, never succeed with a copy left.
    In PostgreSQL (``gallery.keystore_url``) a deleted row lingers in the table's free space, the WAL and
    base backups until they are reused or expire: docs/scaling.md states that horizon.
    """

    BUSY_TIMEOUT = 30.0  # seconds a write waits for readers of the key file

    def __init__(self, location: Path | str, key: DeploymentKey, *, table: str = "subject_keys") -> None:
        """``location``: a file of the key directory, or a PostgreSQL URL (whose ``table`` holds the keys)."""
        if table not in TABLES:
            raise ValueError(f"unknown key table {table}")
        self._table = table
        if isinstance(location, Path):
            location.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not location.exists():
                os.close(os.open(location, os.O_WRONLY | os.O_CREAT, 0o600))
            sqlite = SqliteDatabase(location, synchronous="FULL", journal_mode="DELETE", timeout=self.BUSY_TIMEOUT)
            if sqlite.journal_mode != "DELETE":
                sqlite.close()
                raise StoreUnavailable(f"{location.name} is held open in WAL mode by an older facekeeper process:"
                                       " stop it, then start this one")
            db: Database = sqlite
            self._table = "subject_keys"  # one file per kind of key: the table name has always been this
            db.execute("CREATE TABLE IF NOT EXISTS subject_keys (pseudonym TEXT PRIMARY KEY, wrapped BLOB NOT NULL,"
                       " created_at REAL NOT NULL)")
        else:
            db = PostgresDatabase(location, pool_size=2)
        self._db = db
        self._kek = key.derive("subject-key-wrap")
        self.location = location

    def create(self, pseudonym: str) -> bytes:
        dek = new_data_key()
        wrapped = seal(self._kek, dek, pseudonym.encode())
        self._db.execute(f"INSERT INTO {self._table} VALUES (?, ?, ?)", (pseudonym, wrapped, time.time()))
        return dek

    def get(self, pseudonym: str) -> bytes | None:
        row = self._db.execute(f"SELECT wrapped FROM {self._table} WHERE pseudonym = ?", (pseudonym,)).fetchone()
        if row is None:
            return None
        try:
            return open_sealed(self._kek, row[0], pseudonym.encode())
        except SealError:
            raise DeploymentKeyError("a subject key does not open with this deployment key") from None

    def get_many(self, pseudonyms: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for i in range(0, len(pseudonyms), 500):
            chunk = pseudonyms[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT pseudonym, wrapped FROM {self._table} WHERE pseudonym IN ({marks})", chunk
            )
            for pseudonym, wrapped in rows:
                try:
                    out[pseudonym] = open_sealed(self._kek, wrapped, pseudonym.encode())
                except SealError:
                    raise DeploymentKeyError("a subject key does not open with this deployment key") from None
        return out

    def destroy(self, pseudonyms: list[str]) -> int:
        """Shred keys: delete the rows, then have the engine let go of its copies (see the class docstring).

        Each batch is one statement: if readers keep the file busy, it fails whole and nothing is erased.
        """
        n = 0
        for i in range(0, len(pseudonyms), 500):
            chunk = pseudonyms[i : i + 500]
            marks = ",".join("?" * len(chunk))
            try:
                n += self._db.execute(f"DELETE FROM {self._table} WHERE pseudonym IN ({marks})", chunk).rowcount
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                    raise
                raise StoreUnavailable("the key store is busy (another process is reading it): nothing was erased;"
                                       " retry") from None
        self._db.reclaim()
        return n

    def all_pseudonyms(self, older_than: float | None = None) -> list[str]:
        if older_than is None:
            return [r[0] for r in self._db.execute(f"SELECT pseudonym FROM {self._table}")]
        return [r[0] for r in self._db.execute(
            f"SELECT pseudonym FROM {self._table} WHERE created_at < ?", (older_than,))]

    def close(self) -> None:
        self._db.close()
