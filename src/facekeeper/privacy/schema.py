"""The privacy tables, kept in the gallery's SQLite file so a data change and its audit entry share one
transaction: after a crash both happened or neither did.

Nothing here holds an image, a template or a name. Free text a person could be identified by (consent
evidence references, guardian records, the operator's subject id) is sealed under a per-person key that
lives in the key directory and is destroyed when the person is forgotten.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from facekeeper.errors import GalleryError
from facekeeper.gallery.store import Store

PRIVACY_SCHEMA_VERSION = 2  # 2: consents.template_updates
DAY = 86_400.0

Clock = Callable[[], float]
"""Seconds since the epoch. Injected everywhere so tests (and a dry-run sweep) can move time."""

system_clock: Clock = time.time

SCHEMA = """
CREATE TABLE IF NOT EXISTS people (          -- one pseudonym per person, from the first consent or credential
    pseudonym TEXT PRIMARY KEY,
    lookup TEXT NOT NULL UNIQUE,             -- keyed hash of the operator's subject id
    sealed_id BLOB NOT NULL,                 -- the subject id, sealed under the person's privacy key
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS consents (
    id TEXT PRIMARY KEY,
    pseudonym TEXT NOT NULL,                 -- not a foreign key: the record outlives the person, unlinked
    purpose TEXT NOT NULL,
    notice_version TEXT NOT NULL,
    collected_by TEXT NOT NULL,
    method TEXT NOT NULL CHECK (method IN ('signature', 'checkbox', 'paper')),
    granted_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    minor INTEGER NOT NULL CHECK (minor IN (0, 1)),
    sealed BLOB,                             -- evidence reference and guardian record; NULL once forgotten
    ended_at REAL,
    end_reason TEXT,
    ended_by TEXT,
    template_updates INTEGER NOT NULL DEFAULT 0 CHECK (template_updates IN (0, 1))
);
CREATE INDEX IF NOT EXISTS consents_by_purpose ON consents(purpose, ended_at, expires_at);
CREATE INDEX IF NOT EXISTS consents_by_subject ON consents(pseudonym);
-- live(pseudonym, purpose) runs on every enroll and 1:1 check; without it SQLite scans by purpose
CREATE INDEX IF NOT EXISTS consents_by_subject_purpose ON consents(pseudonym, purpose, granted_at);
CREATE TABLE IF NOT EXISTS usage (           -- the last enrollment or successful match, per purpose
    pseudonym TEXT NOT NULL,
    purpose TEXT NOT NULL,
    last_used_at REAL NOT NULL,
    PRIMARY KEY (pseudonym, purpose)
);
CREATE TABLE IF NOT EXISTS credentials (     -- the non-face alternative: PIN or QR token, stored hashed
    id TEXT PRIMARY KEY,
    pseudonym TEXT NOT NULL,
    purpose TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('pin', 'token')),
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    params TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    failures INTEGER NOT NULL DEFAULT 0,
    last_used_at REAL
);
CREATE INDEX IF NOT EXISTS credentials_by_subject ON credentials(pseudonym);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    tenant TEXT NOT NULL,
    purpose TEXT,
    action TEXT NOT NULL,
    subject TEXT,
    outcome TEXT NOT NULL,
    bucket TEXT,
    detail TEXT NOT NULL,
    mac TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_subject ON audit(subject);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit(at);
-- append-only: stops mistakes and honest code; a forger with the file is caught by the keyed chain
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


# Each step brings a SQLite file from the version before it (PostgreSQL: db/migrations, run by the DBA).
UPGRADES = {
    # consents given before the field existed did not allow templates to be added from matches
    2: ["ALTER TABLE consents ADD COLUMN template_updates INTEGER NOT NULL DEFAULT 0"
        " CHECK (template_updates IN (0, 1))"],
}


def ensure_schema(store: Store) -> None:
    """Create the privacy tables once, or bring an older SQLite file up to date; refuse a newer schema, and a
    PostgreSQL database its migrations have not reached ('facekeeper db migrate')."""
    version = store.get_meta("privacy_schema_version")
    if version == str(PRIVACY_SCHEMA_VERSION):
        return
    if version is not None:
        if not version.isdigit() or int(version) > PRIVACY_SCHEMA_VERSION:
            raise GalleryError(f"{store.name} has privacy schema {version}, this facekeeper reads "
                               f"{PRIVACY_SCHEMA_VERSION}")
        if store.dialect == "postgres":
            raise GalleryError(f"{store.name} has privacy schema {version}, this facekeeper reads "
                               f"{PRIVACY_SCHEMA_VERSION}: run 'facekeeper db migrate' first")
        with store.transaction() as db:
            for step in range(int(version) + 1, PRIVACY_SCHEMA_VERSION + 1):
                for statement in UPGRADES[step]:
                    db.execute(statement)
            store.set_meta("privacy_schema_version", str(PRIVACY_SCHEMA_VERSION))
        return
    with store.transaction() as db:
        for statement in _statements(SCHEMA):
            db.execute(statement)
        store.set_meta("privacy_schema_version", str(PRIVACY_SCHEMA_VERSION))


def _statements(script: str) -> list[str]:
    """Split the schema into statements (``executescript`` would commit our transaction)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines():
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out
