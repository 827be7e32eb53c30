"""Schema migrations for the PostgreSQL backend (Alembic), run by ``facekeeper db migrate`` and ``init``.

SQLite galleries create their tables themselves (``gallery.store``); a PostgreSQL schema is owned by the
operator's DBA, so it changes only through these numbered, reviewable migrations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from facekeeper.db.database import redact
from facekeeper.errors import StoreUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"


def sqlalchemy_url(url: str) -> str:
    """The same database for SQLAlchemy, through psycopg 3 (the driver the rest of facekeeper uses)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ValueError("not a PostgreSQL URL")


def _config() -> object:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head() -> str:
    """The newest migration this facekeeper knows."""
    from alembic.script import ScriptDirectory

    rev = ScriptDirectory.from_config(_config()).get_current_head()  # type: ignore[arg-type]
    assert rev is not None
    return rev


def _engine(url: str) -> object:
    import sqlalchemy

    return sqlalchemy.create_engine(sqlalchemy_url(url), poolclass=sqlalchemy.pool.NullPool)


def current(url: str) -> str | None:
    """The migration the database is at (``None``: never migrated)."""
    import sqlalchemy
    from alembic.runtime.migration import MigrationContext

    engine = _engine(url)
    try:
        with engine.connect() as conn:  # type: ignore[attr-defined]
            return MigrationContext.configure(conn).get_current_revision()
    except sqlalchemy.exc.OperationalError:
        raise StoreUnavailable(f"cannot reach the database at {redact(url)}: is it running?") from None
    finally:
        engine.dispose()  # type: ignore[attr-defined]


def upgrade(url: str, revision: str = "head") -> tuple[str | None, str]:
    """Bring the database to ``revision``; returns (before, after). Safe to repeat."""
    import sqlalchemy
    from alembic import command

    before = current(url)
    engine = _engine(url)
    cfg = _config()
    try:
        with engine.begin() as conn:  # type: ignore[attr-defined]
            cfg.attributes["connection"] = conn  # type: ignore[attr-defined]
            command.upgrade(cfg, revision)  # type: ignore[arg-type]
    except sqlalchemy.exc.OperationalError:
        raise StoreUnavailable(f"cannot reach the database at {redact(url)}: is it running?") from None
    finally:
        engine.dispose()  # type: ignore[attr-defined]
    return before, current(url) or ""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check(url: str) -> list[Check]:
    """What ``facekeeper db check`` reports: reachable, migrated to head, pgvector present, safe settings."""
    import psycopg

    out: list[Check] = []
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            out.append(Check("reachable", True, f"PostgreSQL {version[0] if version else '?'}"))
            vector = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
            out.append(Check("pgvector", vector is not None,
                             f"pgvector {vector[0]}" if vector else "the vector extension is not installed"))
            ssl = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
            host = conn.info.host or ""
            local = host.startswith("/") or host in ("127.0.0.1", "::1", "localhost")
            out.append(Check("tls", bool(ssl and ssl[0]) or local,
                             "TLS on" if ssl and ssl[0] else
                             ("loopback, TLS not needed" if local else "TLS is off on a network connection")))
    except psycopg.OperationalError:
        return [Check("reachable", False, f"cannot reach the database at {redact(url)}")]
    at, want = current(url), head()
    out.append(Check("migrated", at == want, f"at {at or 'nothing'}, this facekeeper needs {want}"
                     + ("" if at == want else ": run 'facekeeper db migrate'")))
    return out
