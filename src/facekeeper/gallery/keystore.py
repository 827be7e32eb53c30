"""Per-subject data keys, wrapped by the deployment key, kept in the key directory (not with the data).

Keeping the wrapped keys out of the gallery file is what makes erasure real: a backup of the gallery
taken before an erasure holds only ciphertext whose key no longer exists anywhere.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from facekeeper.db.database import Database, PostgresDatabase, SqliteDatabase
from facekeeper.errors import DeploymentKeyError
from facekeeper.gallery.keys import DeploymentKey
from facekeeper.gallery.protect import SealError, new_data_key, open_sealed, seal

# A key with no subject in the gallery is either an enrollment in flight or the remains of a crash;
# only the latter (older than this) is removed.
ORPHAN_AGE_SECONDS = 3600.0

TABLES = ("subject_keys", "privacy_keys")


class KeyStore:
    """Create, fetch and destroy subject data keys.

    In a SQLite file of the key directory, deletion overwrites the row (secure_delete) and the WAL is
    truncated. In PostgreSQL (``gallery.keystore_url``) a deleted row lingers in the table's free space, the
    WAL and base backups until they are reused or expire: docs/scaling.md states that horizon.
    """

    def __init__(self, location: Path | str, key: DeploymentKey, *, table: str = "subject_keys") -> None:
        """``location``: a file of the key directory, or a PostgreSQL URL (whose ``table`` holds the keys)."""
        if table not in TABLES:
            raise ValueError(f"unknown key table {table}")
        self._table = table
        if isinstance(location, Path):
            location.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not location.exists():
                os.close(os.open(location, os.O_WRONLY | os.O_CREAT, 0o600))
            db: Database = SqliteDatabase(location, synchronous="FULL")
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
        """Shred keys: delete the rows, then have the engine let go of its copies (see the class docstring)."""
        n = 0
        for p in pseudonyms:
            n += self._db.execute(f"DELETE FROM {self._table} WHERE pseudonym = ?", (p,)).rowcount
        self._db.reclaim()
        return n

    def all_pseudonyms(self, older_than: float | None = None) -> list[str]:
        if older_than is None:
            return [r[0] for r in self._db.execute(f"SELECT pseudonym FROM {self._table}")]
        return [r[0] for r in self._db.execute(
            f"SELECT pseudonym FROM {self._table} WHERE created_at < ?", (older_than,))]

    def close(self) -> None:
        self._db.close()
