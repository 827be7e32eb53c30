"""Where ``Service`` calls run: photo work in worker processes, the rest in threads of the API process.

Face work is CPU-bound and dlib's detector holds the GIL, so threads cannot use a second core; one
``Service`` per tenant in each of N worker processes can. The API process keeps everything cheap and
shared (authentication, rate limits, metrics) and hands each call whose declared cost is ``photo``
(``facekeeper.contract``) to a worker; a worker runs one call at a time. Calls that take milliseconds (consents,
erasure, lists, audit, the descriptors of edge terminals) run in the API process instead, so they never
queue behind photos. Either way a ``Service`` instance (its SQLite connections, its index) is used by
one thread at a time, and instances share a tenant's gallery the way several CLI processes do: through
the store's change log. Photos cross to a worker as bytes in a pipe and are dropped after the call.

Photo calls wait for a turn in a ``FairScheduler`` (one queue per tenant, as many slots as workers), so one
tenant's queue of slow photos never holds another tenant's call for more than about one call.

``ThreadRunner`` alone (``serve --in-process``, tests) runs everything in threads of one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing as mp
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.util import Finalize
from pathlib import Path
from typing import Any, Protocol

import anyio

from facekeeper import config, contract, egress
from facekeeper.api import lifeline
from facekeeper.api.scheduler import FairScheduler
from facekeeper.api.tenants import Layout
from facekeeper.config import Settings
from facekeeper.contract import Cost, Operation
from facekeeper.errors import FacekeeperError, ServiceUnavailable
from facekeeper.privacy import Actor
from facekeeper.service import EngineCache, Service

EngineFactory = Callable[[Settings], Any]  # settings -> the engine a Service is opened with
log = logging.getLogger("facekeeper.api")


class Runner(Protocol):
    async def call(self, actor: Actor, op: Operation, *args: Any, **kwargs: Any) -> Any:
        """The declared operation ``op`` with ``(*args, **kwargs)`` on the actor's tenant, as that actor."""
        ...

    async def submit(self, tenant: str, cost: Cost, work: Callable[[], Any]) -> Any:
        """``work()`` for ``tenant`` where calls of that cost class run, in the tenant's fair turn."""
        ...

    def close(self) -> None: ...


def _tenant_settings(layout: Layout) -> list[Settings]:
    return [config.load(layout.data_dir(tenant)) for tenant in layout.tenants()]


def open_service(layout: Layout, tenant: str, engines: EngineFactory) -> Service:
    """The tenant's ``Service``. A tenant that cannot be opened (a broken settings file, a key file others
    can read) is the operator's to fix: the log says what and where, and the caller learns no server path."""
    data_dir = layout.require(tenant)
    try:
        return Service.open(data_dir, engine=engines(config.load(data_dir)))
    except FacekeeperError as exc:
        if exc.http_status < 500:
            raise
        log.error("tenant %s cannot be opened: %s", tenant, exc.message)
        raise type(exc)(f"tenant {tenant} cannot be opened: the service log says why") from None


@contextlib.contextmanager
def no_server_paths(layout: Layout) -> Iterator[None]:
    """Errors leave without the server's folders in their message: a caller of the API has no business
    knowing where the service keeps its data, keys or code (``/srv/x/tenants/a/license.json`` is told as
    ``tenants/a/license.json``)."""
    try:
        yield
    except FacekeeperError as exc:
        message = exc.message
        for folder in _server_folders(layout):
            message = message.replace(folder + os.sep, "").replace(folder, ".")
        if message == exc.message:
            raise
        raise type(exc)(message, **exc.details) from None


def _server_folders(layout: Layout) -> list[str]:
    code = Path(__file__).resolve().parents[2]  # the package's parent: site-packages or a checkout's src
    folders = {str(p) for base in (layout.key_root, layout.root, code, Path(sys.prefix))
               for p in (base, base.absolute(), base.resolve())}
    return sorted((f for f in folders if f not in (".", os.sep)), key=len, reverse=True)


def config_stamp(service: Service) -> int:
    """When the tenant's settings file last changed: a ``notice set`` or a new purpose reopens the Service."""
    try:
        return service.settings.config_path.stat().st_mtime_ns
    except OSError:
        return 0


def invoke(service: Service, actor: Actor, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run the declared operation ``name`` (the contract's guard included) as ``actor``."""
    op = contract.of(name)
    return getattr(service, op.name)(*args, **{**kwargs, "actor": actor})


# -- in-process ------------------------------------------------------------------------------------
class _Pool:
    def __init__(self, opener: Callable[[], Service], size: int) -> None:
        self._opener = opener
        self._idle: list[tuple[Service, int]] = []
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def borrow(self) -> Iterator[Service]:
        with self._slots:
            with self._lock:
                entry = self._idle.pop() if self._idle else None
            if entry is not None and config_stamp(entry[0]) != entry[1]:
                entry[0].close()
                entry = None
            if entry is None:
                svc = self._opener()
                entry = (svc, config_stamp(svc))
            try:
                yield entry[0]
            finally:
                with self._lock:
                    self._idle.append(entry)

    def close(self) -> None:
        with self._lock:
            for svc, _ in self._idle:
                svc.close()
            self._idle.clear()


class ThreadRunner:
    """``size`` ``Service`` instances per tenant at most, each used by one thread at a time; photo calls
    of all tenants share ``size`` fair slots, so a flood of one tenant's photos cannot take every thread."""

    def __init__(self, layout: Layout, size: int = 2, engines: EngineFactory | None = None) -> None:
        self.layout = layout
        self.size = size
        self._engines = engines or EngineCache()
        self._pools: dict[str, _Pool] = {}
        self._lock = threading.Lock()
        self.photos = FairScheduler(size)

    def _pool(self, tenant: str) -> _Pool:
        with self._lock:
            pool = self._pools.get(tenant)
            if pool is None:
                self.layout.require(tenant)
                pool = self._pools[tenant] = _Pool(functools.partial(open_service, self.layout, tenant,
                                                                     self._engines), self.size)
            return pool

    def _run(self, actor: Actor, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with no_server_paths(self.layout), self._pool(actor.tenant).borrow() as svc:
            return invoke(svc, actor, name, args, kwargs)

    async def call(self, actor: Actor, op: Operation, *args: Any, **kwargs: Any) -> Any:
        return await self.submit(actor.tenant, op.cost, functools.partial(self._run, actor, op.name, args, kwargs))

    async def submit(self, tenant: str, cost: Cost, work: Callable[[], Any]) -> Any:
        """``work()`` in a thread; a photo call first waits for the tenant's fair turn."""
        if cost == "photo":
            return await self.photos.run(tenant, functools.partial(anyio.to_thread.run_sync, work))
        return await anyio.to_thread.run_sync(work)

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


# -- worker processes ------------------------------------------------------------------------------
_layout: Layout | None = None
_services: dict[str, tuple[Service, int]] = {}
_engines = EngineCache()


def _worker_init(root: Path, key_root: Path, env: dict[str, str], guard: dict[str, Any] | None,
                 blocked: Synchronized[int] | None, owner: int) -> None:
    global _layout
    lifeline.die_with(owner)
    os.umask(0o077)
    os.environ.update(env)
    _layout = Layout(root, key_root)
    if guard is not None:

        def count(_: egress.Attempt) -> None:
            if blocked is not None:
                with blocked.get_lock():
                    blocked.value += 1

        egress.EgressGuard(on_attempt=count, **guard).install()
    Finalize(None, _close_services, exitpriority=10)
    _engines.warm(_tenant_settings(_layout))


def _close_services() -> None:
    for svc, _ in _services.values():
        svc.close()
    _services.clear()


def _worker_call(actor: Actor, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    assert _layout is not None
    with no_server_paths(_layout):
        return _call_in_worker(_layout, actor, name, args, kwargs)


def _call_in_worker(layout: Layout, actor: Actor, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    entry = _services.get(actor.tenant)
    if entry is not None and config_stamp(entry[0]) != entry[1]:
        entry[0].close()
        entry = None
    if entry is None:
        svc = open_service(layout, actor.tenant, _engines)
        entry = _services[actor.tenant] = (svc, config_stamp(svc))
    return invoke(entry[0], actor, name, args, kwargs)


def _warm(_: int) -> int:
    return os.getpid()


class ProcessRunner:
    """Photo work in ``workers`` processes (forkserver: no inherited threads, sockets or SQLite handles);
    the light calls in a ``ThreadRunner`` of this process, so a gate sending a descriptor or an operator
    erasing someone does not wait behind a queue of photos.

    A worker that dies mid-call (the kernel's OOM killer, a crash in native code) fails the calls it had
    with 503 and the pool is rebuilt; the API process and the other tenants carry on. An API process that
    dies takes its workers with it (``lifeline``); files they create are the owner's alone (umask 077).
    """

    def __init__(self, layout: Layout, workers: int, *, guard: dict[str, Any] | None = None,
                 threads: int = 2) -> None:
        self.layout = layout
        self.workers = workers
        self._guard = guard
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["facekeeper.engine.preloaded"])  # workers fork with dlib's models
        self.blocked = self._ctx.Value("i", 0)
        self._lock = threading.Lock()
        self._pool = self._new_pool()
        self._engines = EngineCache()
        self._light = ThreadRunner(layout, threads, self._engines)
        self.photos = FairScheduler(workers)

    def _new_pool(self) -> ProcessPoolExecutor:
        env = {k: v for k, v in os.environ.items() if k.startswith("FACEKEEPER_")}
        return ProcessPoolExecutor(self.workers, mp_context=self._ctx, initializer=_worker_init,
                                   initargs=(self.layout.root, self.layout.key_root, env, self._guard,
                                             self.blocked, os.getpid()))

    def warm_up(self) -> set[int]:
        """Start the worker processes (each loads the models as it starts) now rather than on the first
        request, and load the embedder here for the light calls; the workers' process ids."""
        list(self._pool.map(_warm, range(self.workers)))
        self._engines.warm(_tenant_settings(self.layout), photos=False)
        return self.worker_pids()

    def worker_pids(self) -> set[int]:
        return {p.pid for p in (self._pool._processes or {}).values() if p.pid is not None}

    async def call(self, actor: Actor, op: Operation, *args: Any, **kwargs: Any) -> Any:
        # Photo calls take seconds of CPU; everything else (consents, erasure, lists, audit, the descriptors
        # edge terminals send) takes milliseconds and must not queue behind them.
        if op.cost != "photo":
            return await self._light.call(actor, op, *args, **kwargs)
        self.layout.require(actor.tenant)
        return await self.submit(actor.tenant, "photo", functools.partial(_worker_call, actor, op.name, args, kwargs))

    async def submit(self, tenant: str, cost: Cost, work: Callable[[], Any]) -> Any:
        """A photo call in a worker process once the tenant's fair turn comes (``work`` must pickle); a light
        call in a thread of this process."""
        if cost == "light":
            return await self._light.submit(tenant, cost, work)
        return await self.photos.run(tenant, functools.partial(self._in_worker, work))

    async def _in_worker(self, work: Callable[[], Any]) -> Any:
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, work)
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = self._new_pool()
            raise ServiceUnavailable("a worker process stopped during the call: retry") from None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._light.close()
