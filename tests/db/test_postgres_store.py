"""The gallery on a real PostgreSQL: init, moving a SQLite site, concurrent writers, a killed database."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

from facekeeper import config
from facekeeper.cli.main import app
from facekeeper.db.server import LocalPostgres
from facekeeper.errors import StoreUnavailable
from facekeeper.service import Service
from tests.conftest import london, ready
from tests.privacy.conftest import ADMIN, Backend, make_site, people
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("licensed")
runner = CliRunner()
PEOPLE = ("001", "002", "003")


def fk(home: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--home", str(home), *args])
    return result.exit_code, result.output


def test_init_on_postgres_keeps_the_password_out_of_the_settings_file(tmp_path: Path, pg_url: str) -> None:
    home, keys = tmp_path / "site", tmp_path / "keys"
    code, out = fk(home, "init", "--key-dir", str(keys), "--database", pg_url, "--index", "pgvector")
    assert code == 0, out
    password = pg_url.split(":")[2].split("@")[0]
    assert password not in (home / config.CONFIG_NAME).read_text()
    secret = keys / "url.secret"
    assert secret.read_text() == pg_url and stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert not (home / "gallery.db").exists()
    with Service.open(home) as svc:
        assert svc.gallery.store.dialect == "postgres" and svc.settings.index.backend == "pgvector"
    # a second deployment cannot take over the same database
    code, out = fk(tmp_path / "other", "init", "--key-dir", str(tmp_path / "k2"), "--database", pg_url)
    assert code != 0 and "already holds a gallery" in out and password not in out


def test_db_check_and_migrate_report_the_schema(tmp_path: Path, pg_server: LocalPostgres) -> None:
    url = pg_server.create_database("fresh_check")
    try:
        code, out = fk(tmp_path, "--json", "db", "check", "--url", url)
        assert code != 0 and json.loads(out)["checks"]["migrated"]["ok"] is False
        code, out = fk(tmp_path, "--json", "db", "migrate", "--url", url)
        assert code == 0 and json.loads(out)["after"] == json.loads(out)["head"]
        code, out = fk(tmp_path, "--json", "db", "check", "--url", url)
        checks = json.loads(out)["checks"]
        assert code == 0 and all(c["ok"] for c in checks.values()), checks
    finally:
        pg_server.drop_database("fresh_check")


def test_a_sqlite_site_moves_to_postgres_sealed_and_verified(tmp_path: Path, pg_url: str, engine: object) -> None:
    home, keys = tmp_path / "site", tmp_path / "keys"
    with Service.init(home, keys) as svc:
        svc.engine = engine  # type: ignore[assignment]
        ready(svc)
        for p in PEOPLE:
            svc.enroll([london(p)], p)
        svc.delete("003")
        sealed_before = dict(svc.gallery.store.db.execute("SELECT id, sealed FROM templates").fetchall())
        head = svc.privacy.audit.head()
    code, out = fk(home, "--json", "migrate-store", "--from", f"sqlite:{home}", "--to", pg_url, "--index",
                   "pgvector")
    assert code == 0, out
    report = json.loads(out)
    assert report["subjects"] == 2 and report["vectors_indexed"] == 2 and not report["keys_moved"]
    with psycopg.connect(pg_url) as conn:  # moved as ciphertext: the same bytes under the same ids
        moved = {i: bytes(b) for i, b in conn.execute("SELECT id, sealed FROM templates")}
    assert moved == sealed_before
    with Service.open(home, engine=engine) as svc:  # type: ignore[arg-type]
        assert svc.gallery.store.dialect == "postgres"
        assert svc.privacy.audit.verify().ok and svc.privacy.audit.head()[0] == head[0] + 1
        assert svc.identify(london("002", "smiling")).match.subject_id == "002"  # type: ignore[union-attr]
        assert svc.identify(london("003", "smiling")).match is None
        svc.enroll([london("004")], "004")  # ids go on from where SQLite left them
    assert sqlite3.connect(home / "gallery.db").execute("SELECT count(*) FROM subjects").fetchone()[0] == 2
    code, out = fk(home, "migrate-store", "--to", pg_url)
    assert code != 0 and "not on SQLite" in out


WRITER = """
import sys
from pathlib import Path
import numpy as np
from facekeeper import config
from facekeeper.gallery.gallery import Gallery
from facekeeper.gallery.keys import load_key
from facekeeper.privacy import Actor, Privacy
from tests.privacy.conftest import people

settings = config.load(Path(sys.argv[1]))
key = load_key(settings.key_path)
gallery = Gallery.open(settings, key)
privacy = Privacy(settings, key, gallery)
me, n = sys.argv[2], int(sys.argv[3])
admin = Actor("writer-" + me, "admin")
data = people(n, seed=int(me))
for i, (sid, vecs) in enumerate(data.items()):
    sid = f"{me}-{sid}"
    privacy.grant(admin, sid, "access-control", method="paper", evidence="form")
    with privacy.operation(admin, "enroll", "access-control", operation="enroll") as op:
        pseudonym = privacy.prepare_enroll(op, sid)
        gallery.enroll(sid, vecs, "dlib-resnet-v1", pseudonym=pseudonym, within=privacy.enroll_hook(op))
    if i % 3 == 2:
        privacy.erase(admin, sid)
privacy.close()
gallery.close()
"""


def test_two_processes_write_at_once_without_losing_a_write(tmp_path: Path, pg_url: str,
                                                            pg_server: LocalPostgres) -> None:
    site = make_site(tmp_path, backend=Backend(pg_url, pg_server))
    site.settings.index.backend = "pgvector"
    site.settings.save()
    site.close()
    n = 24
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(site.settings.data_dir), me, str(n)], env=env,
                              stderr=subprocess.PIPE, text=True) for me in ("1", "2")]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read() if p.stderr else ""
    again = site.reopen()
    try:
        kept = {f"{me}-{sid}" for me in ("1", "2") for i, sid in enumerate(people(n, seed=int(me))) if i % 3 != 2}
        assert {s.subject_id for s in again.gallery.subjects()} == kept
        assert again.gallery.store.template_count() == 2 * len(kept)
        assert again.gallery.index_size == 2 * len(kept)  # template_vectors followed every erasure
        report = again.privacy.audit.verify()
        assert report.ok
        actions = [e.action for e in again.privacy.audit.entries()]
        assert actions.count("enroll") == 2 * n and actions.count("subject.erase") == 2 * (n // 3)
        erased = people(n, seed=1)["p0002"][0]
        found = again.search(erased, "access-control", k=3)
        assert "1-p0002" not in found
    finally:
        again.close()


def test_a_killed_database_refuses_cleanly_and_the_service_recovers_by_itself(
        tmp_path: Path, pg_url: str, pg_server: LocalPostgres) -> None:
    site = make_site(tmp_path, backend=Backend(pg_url, pg_server))
    data = people(60, seed=7)
    acked: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        for sid, vecs in data.items():
            if stop.is_set():
                return
            try:
                site.consent(sid)
                site.enroll(sid, vecs)
                acked.append(sid)
            except StoreUnavailable as exc:
                failures.append(exc)
            except Exception as exc:  # anything else would be a wrong answer
                failures.append(exc)
                raise

    thread = threading.Thread(target=writer)
    thread.start()
    while len(acked) < 5:
        time.sleep(0.01)
    pg_server.kill()
    time.sleep(0.5)
    with pytest.raises(StoreUnavailable) as exc:
        site.search(data[acked[0]][0], "access-control")
    assert exc.value.http_status == 503 and "password" not in exc.value.message
    pg_server.start()
    thread.join(timeout=120)
    stop.set()
    assert all(isinstance(f, StoreUnavailable) for f in failures), failures
    # recovered by itself: same objects, no reopen; every acknowledged write is there
    for sid in acked:
        assert site.search(data[sid][1], "access-control", k=1) == [sid]
    assert site.privacy.audit.verify().ok
    site.close()


def test_protected_vectors_in_the_database_are_only_those_pgvector_needs(tmp_path: Path, pg_url: str,
                                                                          pg_server: LocalPostgres) -> None:
    """With the faiss index nothing unsealed reaches PostgreSQL; with pgvector the rotated vectors do."""
    site = make_site(tmp_path, backend=Backend(pg_url, pg_server))
    data = people(3)
    for sid, vecs in data.items():
        site.consent(sid)
        site.enroll(sid, vecs)
    rows = site.gallery.store.db.execute("SELECT count(*) FROM template_vectors").fetchone()[0]
    assert rows == 0
    site.settings.index.backend = "pgvector"
    assert site.gallery.rebuild_index() == 6
    first = site.gallery.store.db.execute("SELECT embedding FROM template_vectors ORDER BY template_id").fetchone()
    stored = np.asarray(first[0].to_numpy(), np.float32)
    raw = data["p0000"][0]
    assert not np.allclose(stored, raw, atol=1e-3)  # rotated by the deployment's keyed transform
    assert np.isclose(np.linalg.norm(stored), np.linalg.norm(raw), atol=1e-4)  # distances preserved
    assert site.search(data["p0001"][1], "access-control", k=1) == ["p0001"]
    site.privacy.erase(ADMIN, "p0001")
    assert site.gallery.index_size == 4
    site.close()


def test_an_unavailable_store_is_a_503_problem_with_retry_after() -> None:
    from facekeeper.api.problems import from_error

    response = from_error(StoreUnavailable("the database is unavailable (OperationalError): retry shortly"))
    body = json.loads(bytes(response.body))
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert body["code"] == "store-unavailable"
