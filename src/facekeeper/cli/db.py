"""``facekeeper db``: the PostgreSQL the gallery is kept in.

``start``/``stop``/``status``/``url`` run a local development server (``facekeeper.db.server``,
``pip install 'facekeeper[devdb]'``); production points ``gallery`` at its own PostgreSQL by URL instead.
Registered on the main app by ``cli/main.py``; uses its ``--home``/``--json`` state and error handling
(imported when a command runs, since ``main`` imports this module while it is being built).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="The PostgreSQL store: a local development server (start, stop, status, url).",
                  no_args_is_help=True)

DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="The development server's data directory [default HOME/pg].")]


def _server(data_dir: Path | None, port: int | None = None) -> Any:
    from facekeeper.cli import main as cli
    from facekeeper.db.server import LocalPostgres

    return LocalPostgres(data_dir or cli.state.home / "pg", port)


def _masked(url: str, password: str) -> str:
    return url.replace(f":{password}@", ":***@")


@app.command("start")
def start(
    data_dir: DataDirOpt = None,
    port: Annotated[int | None, typer.Option(help="TCP port on 127.0.0.1 [the last one used, else a free one].")
                    ] = None,
) -> None:
    """Start the development PostgreSQL 18 + pgvector on 127.0.0.1 (created on first use)."""
    from facekeeper.cli import main as cli

    with cli.handled():
        pg = _server(data_dir, port)
        pg.start()
        info = {"data_dir": str(pg.data_dir), "port": pg.port, "pid": pg.pid,
                "password_file": str(pg.password_file)}
    cli.emit(info, lambda: cli.out.print(
        f"PostgreSQL running on 127.0.0.1:{info['port']} (pid {info['pid']}), data in {info['data_dir']}\n"
        f"Superuser 'facekeeper', password in {info['password_file']}; 'facekeeper db url' prints the URL"))


@app.command("stop")
def stop(
    data_dir: DataDirOpt = None,
    mode: Annotated[str, typer.Option(help="smart (wait for clients), fast (roll back) or immediate.")] = "fast",
) -> None:
    """Stop the development PostgreSQL."""
    from facekeeper.cli import main as cli

    with cli.handled():
        pg = _server(data_dir)
        was = pg.running
        pg.stop(mode)
    cli.emit({"data_dir": str(pg.data_dir), "stopped": was},
             lambda: cli.out.print(f"PostgreSQL in {pg.data_dir} " + ("stopped" if was else "was not running")))


@app.command("status")
def status(data_dir: DataDirOpt = None) -> None:
    """Whether the development PostgreSQL runs, where, and its URL with the password masked."""
    from facekeeper.cli import main as cli

    with cli.handled():
        pg = _server(data_dir)
        info: dict[str, Any] = {"data_dir": str(pg.data_dir), "initialized": pg.initialized,
                                "running": pg.running, "pid": pg.pid, "port": pg.port, "url": None,
                                "password_file": str(pg.password_file)}
        if pg.initialized and pg.port is not None:
            info["url"] = _masked(pg.url, pg.password())

    def human() -> None:
        if not info["initialized"]:
            cli.out.print(f"no database in {info['data_dir']}: 'facekeeper db start' creates one")
            return
        state = f"running (pid {info['pid']})" if info["running"] else "stopped"
        cli.out.print(f"PostgreSQL in {info['data_dir']}: {state}\nurl: {info['url']}\n"
                      f"password file: {info['password_file']}")

    cli.emit(info, human)


@app.command("url")
def url(data_dir: DataDirOpt = None) -> None:
    """Print the connection URL. It CONTAINS THE PASSWORD: do not paste it into logs, tickets or chat."""
    from facekeeper.cli import main as cli

    with cli.handled():
        text = _server(data_dir).url
    cli.emit({"url": text}, lambda: typer.echo(text))


# Schema commands (``db migrate``, ``db check``) on the configured store go below.

UrlOpt = Annotated[str | None, typer.Option(
    "--url", help="The database [the deployment's gallery.url, else $FACEKEEPER_DATABASE_URL].")]


def _target(url: str | None) -> str:
    """The URL to work on: given, the deployment's, or the environment's."""
    import os

    from facekeeper import config
    from facekeeper.cli import main as cli
    from facekeeper.errors import ConfigError

    if url:
        return url
    if (cli.state.home / config.CONFIG_NAME).is_file():
        configured = config.load(cli.state.home).database_url
        if configured:
            return configured
    if os.environ.get(config.ENV_DATABASE_URL):
        return os.environ[config.ENV_DATABASE_URL]
    raise ConfigError("which database? give --url, or run this in a deployment with gallery.backend = postgres")


@app.command("migrate")
def migrate_cmd(url: UrlOpt = None) -> None:
    """Bring the database's schema to this facekeeper's version (Alembic; safe to repeat)."""
    from facekeeper.cli import main as cli
    from facekeeper.db import migrate

    with cli.handled():
        before, after = migrate.upgrade(_target(url))
        info = {"before": before, "after": after, "head": migrate.head()}
    cli.emit(info, lambda: cli.out.print(
        f"schema at {after}" + (" (already current)" if before == after else f" (was {before or 'empty'})")))


@app.command("check")
def check_cmd(url: UrlOpt = None) -> None:
    """Reachable, migrated, pgvector installed and runnable on this CPU, TLS on any network hop. Exit 3 if not."""
    from facekeeper.cli import main as cli
    from facekeeper.db import migrate

    with cli.handled():
        target = _target(url)
        checks = migrate.check(target)
        if all(c.ok for c in checks if c.name in ("reachable", "pgvector")):
            checks.append(_cpu_check(target))
    info = {"ok": all(c.ok for c in checks), "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks}}

    def human() -> None:
        for c in checks:
            cli.out.print(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}")

    cli.emit(info, human)
    if not info["ok"]:
        raise typer.Exit(3)


def _cpu_check(url: str) -> Any:
    """Can this CPU run the server's pgvector? Its ``vector.so`` disassembled against /proc/cpuinfo (``db.isa``).

    A pgvector built for newer instructions loads fine and then kills the backend with SIGILL at its first
    vector query, so asking the server proves nothing. We read the library instead: found through the
    ``pg_config`` view (superusers only) when the server runs on this host; elsewhere, run the check there.
    """
    import psycopg

    from facekeeper.db import isa
    from facekeeper.db.migrate import Check

    name = "pgvector-cpu"
    with psycopg.connect(url, connect_timeout=5) as conn:
        host = conn.info.host or ""
        if not (host.startswith("/") or host in ("127.0.0.1", "::1", "localhost")):
            return Check(name, True, "not checked: the server is on another host (run 'facekeeper db check' there)")
        try:
            row = conn.execute("SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'").fetchone()
        except psycopg.errors.InsufficientPrivilege:
            return Check(name, True, "not checked: finding pgvector's library needs a superuser connection")
    library = Path(row[0]) / "vector.so" if row else None
    if library is None or not library.is_file():
        return Check(name, True, f"not checked: no readable {library or 'vector.so'} on this host")
    ok, detail = isa.check_library(library)
    return Check(name, ok, detail)
