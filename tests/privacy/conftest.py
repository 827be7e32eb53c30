"""A real gallery and privacy layer in a temporary deployment, with a clock the test moves.

Every test that takes ``site`` (or ``deployment``) runs twice: on the embedded SQLite file and on a real
PostgreSQL server (``tests/pg_fixtures.py``). ``Backend`` gives the tests what differs: the attacker's raw
access to the tables and the files the data ends up in.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facekeeper.config import Settings
from facekeeper.db import migrate
from facekeeper.db.database import to_pyformat
from facekeeper.db.server import LocalPostgres
from facekeeper.engine import Engine
from facekeeper.gallery.gallery import Gallery
from facekeeper.gallery.keys import DeploymentKey, write_key_file
from facekeeper.privacy import Actor, Privacy
from facekeeper.service import Service
from tests.conftest import ready

MODEL = "dlib-resnet-v1"
T0 = 1_800_000_000.0  # 2027-01-15
DAY = 86_400.0
ADMIN = Actor("alice", "admin")


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, days: float) -> None:
        self.now += days * DAY


@dataclass
class Backend:
    """Where a test deployment keeps its data: ``url`` None for SQLite, else a fresh PostgreSQL database."""

    url: str | None = None
    server: LocalPostgres | None = None
    _raw: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "postgres" if self.url else "sqlite"

    def configure(self, settings: Settings, index: str = "faiss") -> None:
        if self.url:
            settings.gallery.backend, settings.gallery.url, settings.index.backend = "postgres", self.url, index
            migrate.upgrade(self.url)

    def flush(self, settings: Settings) -> None:
        """Push everything written so far to the files a thief would copy."""
        if self.url:
            self.raw(settings).execute("CHECKPOINT")
        else:
            db = sqlite3.connect(settings.gallery_path, isolation_level=None)
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.close()

    def files(self, settings: Settings) -> list[Path]:
        """Every file holding the deployment's data and keys (for PostgreSQL, the server's whole data directory)."""
        dirs = [settings.data_dir, settings.key_dir] + ([self.server.data_dir] if self.server and self.url else [])
        return [f for d in dirs for f in d.rglob("*") if f.is_file()]

    def raw(self, settings: Settings) -> RawDb:
        """The attacker's view: the tables, without the triggers that keep honest code append-only."""
        if self.url:
            import psycopg

            conn = psycopg.connect(self.url, autocommit=True)
            conn.execute("ALTER TABLE audit DISABLE TRIGGER USER")
            self._raw.append(conn)
            return RawDb(conn, postgres=True)
        db = sqlite3.connect(settings.gallery_path, isolation_level=None)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("DROP TRIGGER IF EXISTS audit_no_update")
        db.execute("DROP TRIGGER IF EXISTS audit_no_delete")
        self._raw.append(db)
        return RawDb(db, postgres=False)

    def close(self) -> None:
        if self.url and self._raw:
            self._raw[0].execute("ALTER TABLE audit ENABLE TRIGGER USER")
        for conn in self._raw:
            conn.close()


class RawDb:
    def __init__(self, conn: Any, *, postgres: bool) -> None:
        self.conn, self.postgres = conn, postgres

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(to_pyformat(sql) if self.postgres else sql, tuple(params))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "sqlite":
        b = Backend()
    else:
        b = Backend(request.getfixturevalue("pg_url"), request.getfixturevalue("pg_server"))
    yield b
    b.close()


@dataclass
class Site:
    settings: Settings
    key: DeploymentKey
    gallery: Gallery
    privacy: Privacy
    clock: Clock
    backend: Backend = field(default_factory=Backend)

    def reopen(self) -> Site:
        """A second process on the same files."""
        gallery = Gallery.open(self.settings, self.key)
        return Site(self.settings, self.key, gallery, Privacy(self.settings, self.key, gallery, self.clock), self.clock,
                    self.backend)

    def close(self) -> None:
        self.privacy.close()
        self.gallery.close()

    def consent(self, subject_id: str, purpose: str = "access-control", **kw: object) -> None:
        self.privacy.grant(ADMIN, subject_id, purpose, method=str(kw.pop("method", "paper")),
                           evidence=str(kw.pop("evidence", "form 2027-001")), **kw)  # type: ignore[arg-type]

    def enroll(self, subject_id: str, vectors: np.ndarray, purpose: str = "access-control",
               actor: Actor = ADMIN) -> str:
        """What Service.enroll does around the gallery, without a face engine."""
        with self.privacy.operation(actor, "enroll", purpose, operation="enroll") as op:
            pseudonym = self.privacy.prepare_enroll(op, subject_id)
            return self.gallery.enroll(subject_id, vectors, MODEL, pseudonym=pseudonym,
                                       within=self.privacy.enroll_hook(op))

    def search(self, probe: np.ndarray, purpose: str, k: int = 5) -> list[str]:
        """Subject ids a purpose-bound search returns."""
        allowed = self.privacy.allowed(purpose, self.clock())
        return [self.gallery.identity(c.pseudonym)[0] for c in self.gallery.search(probe, MODEL, k, allowed=allowed)]


def fill_notice(settings: Settings) -> None:
    n = settings.notice
    n.version, n.controller, n.contact = "2027-01", "Example Site Ltd", "privacy@example.test"
    n.retention = "Until you withdraw, 3 years without use, or 3 years at most."
    n.rights = "Access, withdrawal, erasure, a PIN instead of your face, a complaint to the authority."


def make_site(root: Path, notice: bool = True, backend: Backend | None = None) -> Site:
    backend = backend or Backend()
    settings = Settings(data_dir=root / "data", key_dir=root / "keys")
    settings.data_dir.mkdir(parents=True)
    backend.configure(settings)
    if notice:
        fill_notice(settings)
    key = DeploymentKey.generate()
    write_key_file(settings.key_path, key)
    settings.save()
    gallery = Gallery.create(settings, key)
    clock = Clock()
    return Site(settings, key, gallery, Privacy(settings, key, gallery, clock), clock, backend)


@pytest.fixture
def site(tmp_path: Path, backend: Backend) -> Iterator[Site]:
    s = make_site(tmp_path, backend=backend)
    yield s
    s.close()


def people(n: int, per: int = 2, seed: int = 1) -> dict[str, np.ndarray]:
    """Synthetic descriptors shaped like dlib's: identities ~0.9 apart, samples ~0.35 from each other."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 0.08, (n, 128))
    return {f"p{i:04d}": (centres[i] + rng.normal(0, 0.018, (per, 128))).astype(np.float32) for i in range(n)}


@pytest.fixture
def deployment(tmp_path: Path, engine: Engine, backend: Backend) -> Iterator[Service]:
    """The shared ``deployment`` fixture, on each backend in turn."""
    svc = Service.init(tmp_path / "data", tmp_path / "keys", database_url=backend.url)
    svc.engine = engine
    ready(svc)
    yield svc
    svc.close()
