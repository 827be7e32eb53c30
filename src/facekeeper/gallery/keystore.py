"""Per-subject data keys, wrapped by the deployment key, kept in the key directory (not with the data).

Keeping the wrapped keys out of the gallery file is what makes erasure real: a backup of the gallery
taken before an erasure holds only ciphertext whose key no longer exists anywhere.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from facekeeper.errors import DeploymentKeyError
from facekeeper.gallery.keys import DeploymentKey
from facekeeper.gallery.protect import SealError, new_data_key, open_sealed, seal

# A key with no subject in the gallery is either an enrollment in flight or the remains of a crash;
# only the latter (older than this) is removed.
ORPHAN_AGE_SECONDS = 3600.0


class KeyStore:
    """Create, fetch and destroy subject data keys. Deletion overwrites the row (secure_delete)."""

    def __init__(self, path: Path, key: DeploymentKey) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = not path.exists()
        if fresh:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS subject_keys (pseudonym TEXT PRIMARY KEY, wrapped BLOB NOT NULL,"
            " created_at REAL NOT NULL)"
        )
        self._kek = key.derive("subject-key-wrap")
        self.path = path

    def create(self, pseudonym: str) -> bytes:
        dek = new_data_key()
        wrapped = seal(self._kek, dek, pseudonym.encode())
        self._db.execute("INSERT INTO subject_keys VALUES (?, ?, ?)", (pseudonym, wrapped, time.time()))
        return dek

    def get(self, pseudonym: str) -> bytes | None:
        row = self._db.execute("SELECT wrapped FROM subject_keys WHERE pseudonym = ?", (pseudonym,)).fetchone()
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
                f"SELECT pseudonym, wrapped FROM subject_keys WHERE pseudonym IN ({marks})", chunk
            )
            for pseudonym, wrapped in rows:
                try:
                    out[pseudonym] = open_sealed(self._kek, wrapped, pseudonym.encode())
                except SealError:
                    raise DeploymentKeyError("a subject key does not open with this deployment key") from None
        return out

    def destroy(self, pseudonyms: list[str]) -> int:
        """Shred keys: overwrite the rows and flush the write-ahead log so no copy of them remains."""
        n = 0
        for p in pseudonyms:
            n += self._db.execute("DELETE FROM subject_keys WHERE pseudonym = ?", (p,)).rowcount
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return n

    def all_pseudonyms(self, older_than: float | None = None) -> list[str]:
        if older_than is None:
            return [r[0] for r in self._db.execute("SELECT pseudonym FROM subject_keys")]
        return [r[0] for r in self._db.execute(
            "SELECT pseudonym FROM subject_keys WHERE created_at < ?", (older_than,))]

    def close(self) -> None:
        self._db.close()
