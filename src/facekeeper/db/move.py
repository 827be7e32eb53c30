"""Move a site from its SQLite file to PostgreSQL without opening what it does not need to.

Rows are copied as they are: sealed templates and identities stay sealed (their AES-GCM AAD binds the
template id, so ids are kept), wrapped keys stay wrapped, audit entries keep their MACs. Nothing is
decrypted, except when the index backend keeps protected vectors in the database (pgvector, ray): those
are written by the gallery afterwards, from the sealed templates, with the deployment key.

Afterwards every table's row count is compared and the audit chain is verified on the target; only then
does the deployment's settings file point at PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from facekeeper.db import migrate
from facekeeper.errors import GalleryError

# In dependency order (a template needs its subject). changes keeps its sequence numbers: an index
# snapshot names the change-log position it reflects.
GALLERY_TABLES = ("meta", "subjects", "identities", "templates", "changes", "people", "consents", "usage",
                  "credentials", "audit")
KEY_TABLES = {"keystore.db": "subject_keys", "privacy-keys.db": "privacy_keys"}
SEQUENCES = {"templates": "id", "changes": "seq"}
BATCH = 5000


@dataclass
class MoveReport:
    copied: dict[str, int] = field(default_factory=dict)
    keys_moved: bool = False
    audit_entries: int = 0


def _columns(src: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in src.execute(f"PRAGMA table_info({table})")]


def _copy_table(src: sqlite3.Connection, conn: object, source: str, target: str) -> int:
    cols = _columns(src, source)
    if not cols:
        return 0
    names = ", ".join(cols)
    n = 0
    with conn.cursor() as cur, cur.copy(f"COPY {target} ({names}) FROM STDIN") as copy:  # type: ignore[attr-defined]
        rows = src.execute(f"SELECT {names} FROM {source}")
        while batch := rows.fetchmany(BATCH):
            for row in batch:
                copy.write_row(row)
            n += len(batch)
    return n


def _sequence_floor(src: sqlite3.Connection, table: str, column: str) -> int:
    """The highest id SQLite ever handed out (AUTOINCREMENT never reuses one; neither may PostgreSQL)."""
    row = src.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    top = src.execute(f"SELECT max({column}) FROM {table}").fetchone()[0] or 0
    return max(int(row[0]) if row else 0, int(top))


def copy_site(gallery_file: Path, url: str, *, key_dir: Path | None = None, keystore_url: str | None = None,
              progress: Callable[[str, int], None] | None = None) -> MoveReport:
    """Copy the gallery file (and, with ``keystore_url``, the key files of ``key_dir``) into PostgreSQL.

    One transaction per database: a failure leaves the target as it was. The target must be migrated
    and hold no gallery.
    """
    import psycopg

    report = MoveReport()
    migrate.upgrade(url)
    src = sqlite3.connect(f"file:{gallery_file}?mode=ro", uri=True)
    try:
        with psycopg.connect(url) as conn:
            held = conn.execute("SELECT value FROM meta WHERE key = 'deployment_id'").fetchone()
            if held is not None:
                raise GalleryError("the target database already holds a gallery: give an empty database")
            conn.execute("DELETE FROM meta")  # the migration's version rows come back from the source
            for table in GALLERY_TABLES:
                report.copied[table] = _copy_table(src, conn, table, table)
                if progress:
                    progress(table, report.copied[table])
            for table, column in SEQUENCES.items():
                floor = _sequence_floor(src, table, column)
                if floor:
                    conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), %s)", (floor,))
            conn.commit()
        if keystore_url and key_dir is not None:
            migrate.upgrade(keystore_url)
            with psycopg.connect(keystore_url) as kconn:
                for name, table in KEY_TABLES.items():
                    path = key_dir / name
                    if path.is_file():
                        ks = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                        try:
                            report.copied[table] = _copy_table(ks, kconn, "subject_keys", table)
                        finally:
                            ks.close()
                kconn.commit()
            report.keys_moved = True
    finally:
        src.close()
    return report


def verify_counts(gallery_file: Path, url: str) -> dict[str, tuple[int, int]]:
    """Rows per table in the source file and in the target, for every table that differs."""
    import psycopg

    src = sqlite3.connect(f"file:{gallery_file}?mode=ro", uri=True)
    out: dict[str, tuple[int, int]] = {}
    try:
        with psycopg.connect(url) as conn:
            for table in GALLERY_TABLES:
                if not _columns(src, table):
                    continue
                a = int(src.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                b = int(row[0]) if row else 0
                if a != b:
                    out[table] = (a, b)
    finally:
        src.close()
    return out
