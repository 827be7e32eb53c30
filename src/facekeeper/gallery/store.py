"""The gallery's tables: only ciphertext and pseudonyms, in SQLite (one file, WAL) or PostgreSQL.

Every write that must stay consistent (a subject with its templates, an erasure with its change-log
rows) happens in one transaction, so a process killed mid-way leaves the data as before or as after.
The ``changes`` table is the log other processes (and the index snapshot) replay to stay in sync.
SQLite's tables are created here; PostgreSQL's by the migrations in ``facekeeper.db.migrations``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from facekeeper.db.database import Connection, Database, PostgresDatabase, SqliteDatabase
from facekeeper.errors import GalleryError

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subjects (
    pseudonym TEXT PRIMARY KEY,
    lookup TEXT NOT NULL UNIQUE,          -- keyed hash of the operator's subject id, for lookups
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS identities (  -- kept apart from subjects: the sealed id and display name
    pseudonym TEXT PRIMARY KEY REFERENCES subjects(pseudonym) ON DELETE CASCADE,
    sealed BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS templates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pseudonym TEXT NOT NULL REFERENCES subjects(pseudonym) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    sealed BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS templates_by_subject ON templates(pseudonym);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL CHECK (op IN ('add', 'remove')),
    template_id INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class TemplateRow:
    id: int
    pseudonym: str
    model_id: str
    created_at: float
    sealed: bytes


class Store:
    """Thin, typed access to the gallery tables. Knows nothing of keys or images."""

    def __init__(self, location: Path | str, *, create: bool = False, pool_size: int = 4) -> None:
        self.db: Database
        if isinstance(location, str):
            self.name = "the PostgreSQL gallery"
            self.db = PostgresDatabase(location, pool_size=pool_size)
            if self.get_meta("schema_version") is None and not create:
                self.db.close()
                raise GalleryError("the database holds no gallery: run 'facekeeper init' first")
        else:
            self.name = location.name
            if not create and not location.is_file():
                raise GalleryError(f"no gallery at {location}: run 'facekeeper init' first")
            try:
                self.db = SqliteDatabase(location)
                if create:
                    self.db.db.executescript(SCHEMA)
                check = self.db.execute("PRAGMA quick_check").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                raise GalleryError(f"{location.name} is not a readable gallery ({exc}): restore it from a"
                                   " backup") from None
            if check != "ok":
                raise GalleryError(f"{location.name} is corrupted ({check}): restore it from a backup")
        if create and self.get_meta("schema_version") is None:
            with self.transaction():
                self.set_meta("schema_version", str(SCHEMA_VERSION))
        version = self.get_meta("schema_version")
        if version != str(SCHEMA_VERSION):
            self.db.close()
            raise GalleryError(f"{self.name} has schema version {version}, this facekeeper reads {SCHEMA_VERSION}")

    @property
    def dialect(self) -> str:
        return self.db.dialect

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction (writers serialized), rolled back on any exception."""
        with self.db.transaction() as conn:
            yield conn

    # -- meta ---------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{self.name} is not a readable gallery ({exc})") from None
        except Exception as exc:
            if type(exc).__name__ == "UndefinedTable":  # psycopg: a database nobody has migrated
                raise GalleryError("the database has no facekeeper tables: run 'facekeeper db migrate'") from None
            raise
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (key, value))

    # -- subjects -----------------------------------------------------------------------------
    def pseudonym_for(self, lookup: str) -> str | None:
        row = self.db.execute("SELECT pseudonym FROM subjects WHERE lookup = ?", (lookup,)).fetchone()
        return None if row is None else row[0]

    def subject_exists(self, pseudonym: str) -> bool:
        return self.db.execute("SELECT 1 FROM subjects WHERE pseudonym = ?", (pseudonym,)).fetchone() is not None

    def subjects(self) -> list[tuple[str, float]]:
        return list(self.db.execute("SELECT pseudonym, created_at FROM subjects ORDER BY created_at, pseudonym"))

    def identity(self, pseudonym: str) -> bytes | None:
        row = self.db.execute("SELECT sealed FROM identities WHERE pseudonym = ?", (pseudonym,)).fetchone()
        return None if row is None else row[0]

    def subject_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM subjects").fetchone()[0])

    # -- templates ----------------------------------------------------------------------------
    def templates_of(self, pseudonym: str) -> list[TemplateRow]:
        return [TemplateRow(*r) for r in self.db.execute(
            "SELECT id, pseudonym, model_id, created_at, sealed FROM templates WHERE pseudonym = ? ORDER BY id",
            (pseudonym,))]

    def templates_by_id(self, ids: list[int]) -> list[TemplateRow]:
        out: list[TemplateRow] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            out.extend(TemplateRow(*r) for r in self.db.execute(
                f"SELECT id, pseudonym, model_id, created_at, sealed FROM templates WHERE id IN ({marks})", chunk))
        return out

    def iter_templates(self, batch: int = 10_000) -> Iterator[list[TemplateRow]]:
        last = 0
        while True:
            rows = [TemplateRow(*r) for r in self.db.execute(
                "SELECT id, pseudonym, model_id, created_at, sealed FROM templates WHERE id > ? ORDER BY id LIMIT ?",
                (last, batch))]
            if not rows:
                return
            yield rows
            last = rows[-1].id

    def template_count(self, model_id: str | None = None) -> int:
        """Templates of every model, or of ``model_id`` only."""
        if model_id is None:
            return int(self.db.execute("SELECT count(*) FROM templates").fetchone()[0])
        return int(self.db.execute("SELECT count(*) FROM templates WHERE model_id = ?", (model_id,)).fetchone()[0])

    def pseudonyms_of_templates(self, ids: list[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            out.update(self.db.execute(f"SELECT id, pseudonym FROM templates WHERE id IN ({marks})", chunk))
        return out

    def model_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT DISTINCT model_id FROM templates")}

    # -- change log ---------------------------------------------------------------------------
    def last_change(self) -> int:
        row = self.db.execute("SELECT max(seq) FROM changes").fetchone()
        return int(row[0] or 0)

    def changes_since(self, seq: int) -> list[tuple[int, str, int]]:
        return list(self.db.execute("SELECT seq, op, template_id FROM changes WHERE seq > ? ORDER BY seq", (seq,)))

    def close(self) -> None:
        self.db.close()
