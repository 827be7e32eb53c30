"""Running the service: ``serve`` for ``facekeeper serve``, ``BackgroundServer`` for tests and the demo.

uvicorn's access log is off: it would write request paths, and a path can hold a subject id. Our own
access line has the route template, status, time, tenant and key id, which identify no one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx
import uvicorn
from fastapi import FastAPI

from facekeeper import config, egress
from facekeeper.api.app import ServerSettings, create_app
from facekeeper.api.runner import ProcessRunner, Runner
from facekeeper.api.tenants import Layout, refuse_shared_key

log = logging.getLogger("facekeeper.api")


def _config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    config = uvicorn.Config(app, host=host, port=port, access_log=False, log_config=None, log_level="info",
                            lifespan="on", server_header=False, timeout_graceful_shutdown=10)
    logging.getLogger("uvicorn.access").disabled = True
    return config


@contextlib.contextmanager
def guarded(settings: ServerSettings) -> Iterator[egress.EgressGuard | None]:
    """The egress guard around the API process, when the settings deny egress and none is installed yet."""
    if not settings.deny_egress or egress.installed() is not None:
        yield egress.installed()
        return
    guard = egress.EgressGuard(allow=settings.allow_nets, log_path=egress.log_path_from_env(),
                               on_attempt=lambda a: log.error("egress refused: %s", a))
    with guard:
        yield guard


def serve(layout: Layout, settings: ServerSettings) -> None:
    """Run until SIGINT/SIGTERM; workers are started before the port opens, so the first call is not slow.
    The process keeps a private umask, so the SQLite files, snapshots and licenses it writes are 0600."""
    refuse_shared_key()
    os.umask(config.PRIVATE_UMASK)  # every file the service and its workers create is the owner's alone
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with guarded(settings):
        app = create_app(layout, settings)
        runner = app.state.ctx.runner
        if isinstance(runner, ProcessRunner):
            runner.warm_up()
        log.info("serving %d tenant(s) from %s on %s:%d with %s", len(layout.tenants()), layout.root,
                 settings.host, settings.port,
                 "threads" if settings.in_process else f"{settings.effective_workers()} worker process(es)")
        uvicorn.Server(_config(app, settings.host, settings.port)).run()


class BackgroundServer:
    """A real uvicorn on 127.0.0.1 (an ephemeral port) in a thread of this process; ``url`` once started."""

    def __init__(self, layout: Layout, settings: ServerSettings | None = None, *, runner: Runner | None = None,
                 port: int = 0) -> None:
        self.settings = settings or ServerSettings(in_process=True)
        self.app = create_app(layout, self.settings, runner=runner)
        self._server = uvicorn.Server(_config(self.app, "127.0.0.1", port))
        self._thread = threading.Thread(target=self._server.run, name="facekeeper-api", daemon=True)
        self.url = ""

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class ServerProcess:
    """``facekeeper serve`` as a child process in a process group of its own (bench, tests, demo).

    ``kill()`` sends SIGKILL to the whole group (the API process and its workers), as a crash would.
    ``prefix`` wraps the command (e.g. ``["unshare", "-n"]``).
    """

    def __init__(self, layout: Layout, *, port: int | None = None, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, log: Path | None = None) -> None:
        self.layout = layout
        self.port = port or free_port()
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> ServerProcess:
        cmd = [sys.executable, "-m", "facekeeper.cli.main", "serve", "--root", str(self.layout.root), "--key-root",
               str(self.layout.key_root), "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        out = self.log.open("ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"facekeeper serve exited with {self.proc.returncode}"
                                   + (f"; see {self.log}" if self.log else ""))
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1.0, trust_env=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("facekeeper serve did not answer in time")

    def kill(self) -> None:
        """SIGKILL the server and its workers, at once: nothing gets to clean up."""
        self._signal(signal.SIGKILL)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        self._signal(signal.SIGTERM, timeout)

    def _signal(self, sig: int, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
