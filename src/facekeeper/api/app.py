"""The FastAPI application: ``create_app`` wires settings, key store, rate limiter, metrics and runner.

Order of checks for every request: body size (from ``Content-Length`` and while reading), API key,
rate limit, role (and key purpose), then the body is parsed and the route calls ``Service`` through the
runner. Errors at any step are problem+json with the stable codes of ``facekeeper.errors``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facekeeper import contract, egress, web
from facekeeper.api import problems
from facekeeper.api.auth import Caller, token_of
from facekeeper.api.keys import KeyStore
from facekeeper.api.metrics import Metrics, gates_in
from facekeeper.api.ratelimit import RateLimiter
from facekeeper.api.runner import ProcessRunner, Runner, ThreadRunner
from facekeeper.api.tenants import Layout
from facekeeper.errors import FacekeeperError, RequestTooLarge
from facekeeper.service import Service

log = logging.getLogger("facekeeper.api")
access = logging.getLogger("facekeeper.api.access")  # route templates only: a path may hold a subject id
try:
    VERSION = metadata.version("facekeeper")
except metadata.PackageNotFoundError:
    VERSION = "0+unknown"
API_PREFIX = "/v1"
P = ParamSpec("P")
R = TypeVar("R")
_CONVERTOR = re.compile(r":\w+}")  # "{subject_id:path}" is labelled "{subject_id}"


@dataclass
class ServerSettings:
    """How the service runs. Every field has a ``facekeeper serve`` option."""

    host: str = "127.0.0.1"  # behind a TLS-terminating proxy on the same host; see docs/deployment.md
    port: int = 8740
    workers: int = 0  # processes running face work; 0 = one per CPU core
    in_process: bool = False  # run Service calls in threads of the API process (tests, tiny sites)
    threads: int = 2  # Service instances per tenant for calls run in the API process (all, with in_process)
    max_body_bytes: int = 16 * 1024 * 1024
    rate: float = 10.0  # requests per second per API key, sustained
    burst: int = 30  # requests a quiet key may send at once
    deny_egress: bool = True  # refuse outbound connections other than loopback (and allow_nets)
    allow_nets: list[str] = field(default_factory=list)

    def effective_workers(self) -> int:
        return self.workers or os.cpu_count() or 1


@dataclass
class Context:
    """What routes reach through ``request.app.state.ctx``."""

    layout: Layout
    settings: ServerSettings
    keys: KeyStore
    limiter: RateLimiter
    metrics: Metrics
    runner: Runner


# -- authentication dependency ----------------------------------------------------------------------
_bearer = HTTPBearer(auto_error=False, description="An API key from 'facekeeper keys create'.")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same API key, as a header.")


def context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def allow(action: str | None = None) -> Callable[..., Caller]:
    """A dependency: the authenticated caller, within its rate limit, allowed to do ``action`` (when the
    route does not call ``Service``, which checks roles and audits refusals itself)."""

    def dependency(request: Request,
                   _b: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
                   _h: Annotated[str | None, Depends(_header)] = None) -> Caller:
        ctx = context(request)
        key = ctx.keys.authenticate(token_of(request))
        request.state.tenant, request.state.key_id = key.tenant, key.id
        try:
            ctx.limiter.check(key.id)
        except FacekeeperError:
            ctx.metrics.rate_limited(key.tenant)
            raise
        caller = Caller(key.id, key.tenant, key.role, key.purpose)
        if action is not None:
            caller.require(action)
        return caller

    dependency.__name__ = f"allow_{(action or 'service').replace('.', '_')}"
    return dependency


async def run(request: Request, caller: Caller, handle: Callable[Concatenate[Service, P], R], *args: P.args,
              **kwargs: P.kwargs) -> R:
    """The declared operation ``handle`` (``Service.identify``: typed, checked against its signature) on the
    caller's tenant, as the caller, where its cost says (see ``runner``)."""
    result: R = await context(request).runner.call(caller.actor, contract.of(handle), *args, **kwargs)
    return result


# -- the outermost guard: size limit, metrics, last-resort errors ------------------------------------
class Guard:
    """Pure ASGI: refuses oversized bodies early, times every request, and never lets an error out raw.

    Starlette's server-error middleware would re-raise an unexpected exception to uvicorn, which logs it
    with its message; catching it here logs its traceback (frames and types, a worker's included) free of
    whatever data the message held.
    """

    def __init__(self, app: ASGIApp, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        limit = self.ctx.settings.max_body_bytes
        status = 500
        started = False
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(f"the request body is over the limit of {limit} bytes", limit=limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started, status = True, int(message["status"])
            await send(message)

        try:
            length = _content_length(scope)
            if length is not None and length > limit:
                raise RequestTooLarge(f"the request body is over the limit of {limit} bytes", limit=limit)
            await self.app(scope, limited, tracked)
        except Exception as exc:
            if started:
                log.error("error after the response started: %s\n%s", type(exc).__name__,
                          problems.traceback_without_data(exc))
            else:
                response = (problems.from_error(exc) if isinstance(exc, FacekeeperError)
                            else await problems.unexpected(scope, exc))
                await response(scope, receive, tracked)
        finally:
            route = _CONVERTOR.sub("}", getattr(scope.get("route"), "path", "unmatched"))
            state = scope.get("state", {})
            tenant, elapsed = str(state.get("tenant", "")), time.perf_counter() - started_at
            self.ctx.metrics.request(tenant, route, scope.get("method", ""), status, elapsed)
            access.info("%s %s %d %.3fs tenant=%s key=%s", scope.get("method", ""), route, status, elapsed,
                        tenant or "-", state.get("key_id", "-"))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


# -- the application -------------------------------------------------------------------------------
def make_runner(layout: Layout, settings: ServerSettings) -> Runner:
    if settings.in_process:
        return ThreadRunner(layout, settings.threads)
    guard = {"allow": settings.allow_nets, "log_path": egress.log_path_from_env()} if settings.deny_egress else None
    return ProcessRunner(layout, settings.effective_workers(), guard=guard, threads=settings.threads)


def create_app(layout: Layout, settings: ServerSettings | None = None, *, runner: Runner | None = None) -> FastAPI:
    """The ASGI app for a service root. ``runner`` defaults to worker processes (or threads, ``in_process``)."""
    from facekeeper.api.routes import ROUTERS

    settings = settings or ServerSettings()
    keys = KeyStore(layout.api_keys_path)
    metrics = Metrics(egress_blocked=lambda: _blocked(ctx), gates=gates_in(layout.data_dir))
    ctx = Context(layout, settings, keys, RateLimiter(settings.rate, settings.burst), metrics,
                  runner or make_runner(layout, settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            ctx.runner.close()
            keys.close()
            app.state.accounts.close()

    app = FastAPI(
        title="facekeeper",
        version=VERSION,
        summary="On-premises face recognition where the faces never leave.",
        description=("Every call needs an API key (`facekeeper keys create`). Images are sent as a multipart"
                     " upload or base64 in JSON; edge terminals send a descriptor instead (docs/deployment.md)."
                     " Errors are RFC 9457 problem details whose `code` is facekeeper's stable error code."),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        responses={"4XX": _problem_doc("The request was refused"), "5XX": _problem_doc("The service failed")},
    )
    app.state.ctx = ctx
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)
    web.register(app)  # the console: /console and /me, outside the OpenAPI document
    app.add_middleware(Guard, ctx=ctx)
    return app


def _problem_doc(description: str) -> dict[str, Any]:
    from facekeeper.api.schemas import Problem

    return {"description": f"{description}: RFC 9457 problem details",
            "content": {problems.MEDIA_TYPE: {"schema": Problem.model_json_schema()}}}


def _blocked(ctx: Context) -> int:
    guard = egress.installed()
    here = len(guard.attempts) if guard is not None else 0
    workers = getattr(ctx.runner, "blocked", None)
    return here + (int(workers.value) if workers is not None else 0)


