"""What every console page shares: templates, the session cookie, CSRF, the caller, errors in words.

Cookies are HttpOnly and SameSite=Strict, scoped to ``/console`` (accounts) or ``/me`` (people), and Secure
when the request came over HTTPS: uvicorn trusts ``X-Forwarded-Proto`` from a proxy on the same host, so a
console behind the TLS-terminating proxy that docs/deployment.md asks for gets Secure cookies. A session
belongs to one tenant; a cookie shown on another tenant's pages is refused. Every POST carries the session's
CSRF token (a form field, or the ``X-CSRF-Token`` header from the console's script).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from facekeeper.api.auth import Caller
from facekeeper.errors import FacekeeperError
from facekeeper.privacy.policy import may
from facekeeper.web import HERE, qr
from facekeeper.web.accounts import AccountStore, Session, csrf_ok

COOKIE = "fk_console"
PERSON_COOKIE = "fk_me"
templates = Jinja2Templates(directory=HERE / "templates")

# The console's pages by role: (path under /console/<tenant>, label, the action that decides who sees it)
NAV: tuple[tuple[str, str, str], ...] = (
    ("", "Home", ""),
    ("/enrol", "Enrolment desk", "enroll"),
    ("/subjects", "Subjects", "subject.list"),
    ("/test", "Test page", "identify"),
    ("/audit", "Audit", "audit.export"),
    ("/compliance", "Compliance", "compliance.report"),
    ("/system", "Calibration & license", "license.status"),
    ("/devices", "Gates & liveness", "devices.status"),
    ("/admin", "Administration", "keys.manage"),
)


class Refused(Exception):
    """A console request that ends in a page of its own: a redirect to sign in, or a refusal in words."""

    def __init__(self, status: int, message: str, location: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.location = status, message, location


def when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


templates.env.filters["when"] = when
templates.env.globals["may"] = may
templates.env.globals["qr"] = qr.svg


def accounts(request: Request) -> AccountStore:
    store: AccountStore = request.app.state.accounts
    return store


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, token: str, path: str) -> None:
    response.set_cookie(name, token, httponly=True, samesite="strict", secure=secure(request), path=path)


def session_for(request: Request, tenant: str) -> Session:
    """The signed-in account, which must belong to ``tenant``, or a redirect to sign in / a refusal."""
    session = accounts(request).session(request.cookies.get(COOKIE))
    if session is None:
        raise Refused(303, "sign in first", f"/console/login?tenant={tenant}")
    if session.tenant != tenant:
        raise Refused(403, f"this session belongs to another tenant: sign in to {tenant} to see its pages")
    request.state.tenant, request.state.key_id = session.tenant, session.actor_id
    return session


def caller(session: Session) -> Caller:
    """The account as ``run`` expects a caller: the audit names ``console:<name>``, the role is the account's."""
    return Caller(session.actor_id, session.tenant, session.role, None)


async def check_csrf(request: Request, session: Session) -> FormData:
    """The form of a POST, after its CSRF token has been checked (field ``csrf`` or ``X-CSRF-Token``)."""
    form = await request.form()
    presented = request.headers.get("x-csrf-token") or form.get("csrf")
    if not csrf_ok(session, presented if isinstance(presented, str) else None):
        raise Refused(403, "the form's security token is missing or stale: reload the page and try again")
    return form


def page(request: Request, name: str, session: Session | None, status: int = 200, **values: Any) -> HTMLResponse:
    nav = [] if session is None or session.kind != "account" else [
        (f"/console/{session.tenant}{path}", label) for path, label, action in NAV
        if not action or may(session.role, action)]
    return templates.TemplateResponse(request, name, {"session": session, "nav": nav, "now": time.time(),
                                                      **values}, status_code=status)


def problem(request: Request, session: Session | None, exc: FacekeeperError, name: str = "error.html",
            **values: Any) -> HTMLResponse:
    """A refusal from ``Service`` as a page: what was refused and why, in its own words."""
    return page(request, name, session, exc.http_status, error=exc.message, code=exc.code, **values)


def install(app: FastAPI) -> None:
    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        if exc.location:
            return RedirectResponse(exc.location, status_code=exc.status)
        return page(request, "error.html", None, exc.status, error=exc.message, code="refused")

    app.add_exception_handler(Refused, refused)
