"""The people a deployment knows, by pseudonym, from their first consent or credential on.

One person has one pseudonym, shared by the consent ledger, the gallery (``Gallery.enroll(pseudonym=)``),
credentials and the audit. What could identify the person (the operator's subject id, consent evidence,
a guardian record) is sealed under a per-person privacy key kept in the key directory
(``privacy-keys.db``); forgetting the person destroys that key, so what remains (consent dates, audit
entries) is pseudonymous for good, in the live file and in every backup.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from hashlib import sha256
from pathlib import Path
from typing import Any

from facekeeper.db.database import Connection
from facekeeper.errors import DeploymentKeyError, UnknownSubject
from facekeeper.gallery.gallery import Gallery, normal_subject_id
from facekeeper.gallery.keys import DeploymentKey
from facekeeper.gallery.keystore import ORPHAN_AGE_SECONDS, KeyStore
from facekeeper.gallery.protect import SealError, open_sealed, seal
from facekeeper.gallery.store import Store

KEYSTORE_NAME = "privacy-keys.db"


class Registry:
    def __init__(self, store: Store, gallery: Gallery, key: DeploymentKey, keys: Path | str) -> None:
        """``keys``: where the privacy keys live, a file of the key directory or a PostgreSQL URL."""
        self.store = store
        self.gallery = gallery
        self._lookup_key = key.derive("privacy/subject-lookup")
        self.keys = KeyStore(keys, key, table="privacy_keys")

    def close(self) -> None:
        self.keys.close()

    def lookup(self, subject_id: str) -> str:
        """The keyed hash a subject id is found by, of its one normal form (``normal_subject_id``)."""
        return hmac.new(self._lookup_key, normal_subject_id(subject_id).encode(), sha256).hexdigest()

    def find(self, subject_id: str) -> str | None:
        row = self.store.db.execute("SELECT pseudonym FROM people WHERE lookup = ?",
                                    (self.lookup(subject_id),)).fetchone()
        return None if row is None else str(row[0])

    def resolve(self, subject_id: str) -> str:
        pseudonym = self.find(subject_id)
        if pseudonym is None:
            raise UnknownSubject(f"no subject '{subject_id}' is known here: grant a consent or issue a credential"
                                 " first")
        return pseudonym

    def known(self, pseudonym: str, db: Connection | None = None) -> bool:
        conn = db or self.store.db
        return conn.execute("SELECT 1 FROM people WHERE pseudonym = ?", (pseudonym,)).fetchone() is not None

    def ensure(self, subject_id: str, now: float) -> str:
        """The person's pseudonym, registering them first if need be.

        A subject the gallery already holds (enrolled before privacy tracking) keeps its gallery pseudonym.
        Whether they are new is decided in the write transaction, so two processes registering one person
        at once agree on one pseudonym (the second finds the first's row).
        """
        subject_id = normal_subject_id(subject_id)
        found = self.find(subject_id)
        if found is not None:
            return found
        lookup = self.lookup(subject_id)
        created: str | None = None
        try:
            with self.store.transaction() as db:
                row = db.execute("SELECT pseudonym FROM people WHERE lookup = ?", (lookup,)).fetchone()
                if row is not None:
                    return str(row[0])
                pseudonym = self.gallery.find(subject_id) or "s_" + secrets.token_hex(10)
                pkey = self.keys.create(pseudonym)
                created = pseudonym
                try:
                    sealed = seal(pkey, json.dumps({"subject_id": subject_id}).encode(), _aad("id", pseudonym))
                    db.execute("INSERT INTO people VALUES (?, ?, ?, ?)", (pseudonym, lookup, sealed, now))
                except BaseException:
                    self.keys.destroy([pseudonym])  # before the lock is released: the next writer may create it
                    created = None
                    raise
            created = None
        except BaseException:
            if created is not None:  # the commit failed
                self.keys.destroy([created])
            raise
        return pseudonym

    def subject_id(self, pseudonym: str) -> str | None:
        row = self.store.db.execute("SELECT sealed_id FROM people WHERE pseudonym = ?", (pseudonym,)).fetchone()
        if row is None:
            return None
        data = self.unseal(pseudonym, "id", row[0])
        return None if data is None else str(data["subject_id"])

    def people(self) -> list[str]:
        return [r[0] for r in self.store.db.execute("SELECT pseudonym FROM people ORDER BY created_at, pseudonym")]

    def created_at(self, pseudonym: str) -> float | None:
        row = self.store.db.execute("SELECT created_at FROM people WHERE pseudonym = ?", (pseudonym,)).fetchone()
        return None if row is None else float(row[0])

    # -- personal fields ------------------------------------------------------------------------
    def seal(self, pseudonym: str, label: str, data: dict[str, Any]) -> bytes:
        pkey = self.keys.get(pseudonym)
        if pkey is None:
            raise UnknownSubject("this subject has been forgotten")
        return seal(pkey, json.dumps(data, ensure_ascii=False).encode(), _aad(label, pseudonym))

    def unseal(self, pseudonym: str, label: str, blob: bytes | None) -> dict[str, Any] | None:
        """The sealed fields, or None once the person is forgotten (the key no longer exists)."""
        if blob is None:
            return None
        pkey = self.keys.get(pseudonym)
        if pkey is None:
            return None
        try:
            return dict(json.loads(open_sealed(pkey, blob, _aad(label, pseudonym))))
        except SealError:
            raise DeploymentKeyError("a privacy record does not open with this subject's key") from None

    # -- forgetting -----------------------------------------------------------------------------
    def forget_rows(self, db: Connection, pseudonym: str) -> bool:
        """Inside the caller's transaction: drop the person's row and sealed fields. Then call ``shred``."""
        gone = db.execute("DELETE FROM people WHERE pseudonym = ?", (pseudonym,)).rowcount
        db.execute("UPDATE consents SET sealed = NULL WHERE pseudonym = ?", (pseudonym,))
        db.execute("DELETE FROM credentials WHERE pseudonym = ?", (pseudonym,))
        db.execute("DELETE FROM usage WHERE pseudonym = ?", (pseudonym,))
        return bool(gone)

    def shred(self, pseudonym: str) -> bool:
        """Destroy the person's privacy key (after the rows are gone): copies of sealed fields become noise."""
        return self.keys.destroy([pseudonym]) > 0

    def reconcile(self) -> int:
        """Finish a forgetting a crash interrupted: shred keys of people no longer registered."""
        known = set(self.people())
        stale = [p for p in self.keys.all_pseudonyms(older_than=time.time() - ORPHAN_AGE_SECONDS) if p not in known]
        return self.keys.destroy(stale) if stale else 0


def _aad(label: str, pseudonym: str) -> bytes:
    return f"privacy|{label}|{pseudonym}".encode()
