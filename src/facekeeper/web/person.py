"""The person's own page (``/me``): reached with the reference code and PIN handed over at enrolment.

It shows what is held about them (the subject access export, never a template), their consents, lets them
withdraw one (the last erases the face at once) and hands them the signed erasure receipt. The session is
bound to the one subject the code opens: no field of any request names a subject, so no other person can be
reached. Calls go through the same guard as an operator's at the desk, as ``person:<code hash>`` with the
operator role's permission for the three things a person may ask the desk for (see docs/console.md).
"""

from __future__ import annotations

import json
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from facekeeper.api.app import run
from facekeeper.api.auth import Caller
from facekeeper.errors import FacekeeperError, UnknownSubject
from facekeeper.service import Service
from facekeeper.web.accounts import Session, csrf_ok
from facekeeper.web.common import PERSON_COOKIE, Refused, accounts, page, problem, set_cookie

router = APIRouter(include_in_schema=False)
PERSON_CSRF = "fk_me_login"


def person(request: Request) -> Session:
    session = accounts(request).session(request.cookies.get(PERSON_COOKIE), kind="person")
    if session is None or session.subject_id is None:
        raise Refused(303, "enter your code first", "/me")
    request.state.tenant, request.state.key_id = session.tenant, session.actor_id
    return session


def as_caller(session: Session) -> Caller:
    return Caller(session.actor_id, session.tenant, session.role, None)


async def checked(request: Request, session: Session) -> dict[str, str]:
    form = await request.form()
    presented = form.get("csrf")
    if not csrf_ok(session, presented if isinstance(presented, str) else None):
        raise Refused(403, "the form's security token is missing or stale: reload the page and try again")
    return {k: str(v) for k, v in form.items()}


@router.get("/me")
def me_form(request: Request) -> HTMLResponse:
    token = secrets.token_urlsafe(16)
    response = page(request, "me_login.html", None, login_csrf=token)
    response.set_cookie(PERSON_CSRF, token, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        path="/me", max_age=3600)
    return response


@router.post("/me")
async def me_login(request: Request) -> Response:
    form = await request.form()
    cookie = request.cookies.get(PERSON_CSRF)
    if not cookie or not secrets.compare_digest(cookie, str(form.get("csrf", ""))):
        return page(request, "me_login.html", None, 403, login_csrf=cookie or "",
                    error="the form is stale: reload the page and enter your code again")
    try:
        session = accounts(request).open_self_service(str(form.get("code", "")), str(form.get("pin", "")))
    except FacekeeperError as exc:
        return page(request, "me_login.html", None, exc.http_status, login_csrf=cookie, error=exc.message)
    response = RedirectResponse("/me/home", status_code=303)
    set_cookie(response, request, PERSON_COOKIE, session.token, "/me")
    return response


@router.get("/me/home")
async def me_home(request: Request) -> HTMLResponse:
    session = person(request)
    assert session.subject_id is not None
    try:
        doc = await run(request, as_caller(session), Service.export_subject, session.subject_id)
    except UnknownSubject:
        assert session.subject is not None
        accounts(request).forget_self_service(session.subject)
        return page(request, "me.html", session, doc=None)
    except FacekeeperError as exc:
        return problem(request, session, exc)
    return page(request, "me.html", session, doc=doc)


@router.get("/me/export")
async def me_export(request: Request) -> Response:
    session = person(request)
    assert session.subject_id is not None
    try:
        doc = await run(request, as_caller(session), Service.export_subject, session.subject_id)
    except FacekeeperError as exc:
        return problem(request, session, exc)
    return Response(json.dumps(doc, indent=2) + "\n", media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="what-is-held-about-me.json"'})


@router.post("/me/withdraw")
async def me_withdraw(request: Request) -> HTMLResponse:
    """Withdraw one purpose. When it was the last, the face is erased now and the receipt is shown (and can be
    downloaded) on this page only: the code is then forgotten, since nothing is left to look at."""
    session = person(request)
    form = await checked(request, session)
    assert session.subject_id is not None and session.subject is not None
    try:
        r = await run(request, as_caller(session), Service.withdraw_consent, session.subject_id, form.get("purpose"))
    except FacekeeperError as exc:
        return problem(request, session, exc)
    receipt = json.dumps(r.receipt, indent=2) if r.receipt else None
    if not r.remaining:
        accounts(request).forget_self_service(session.subject)
    return page(request, "me_withdrawn.html", session, result=r, receipt=receipt)


@router.post("/me/logout")
async def me_logout(request: Request) -> Response:
    session = person(request)
    await checked(request, session)
    accounts(request).logout(session.token)
    response = RedirectResponse("/me", status_code=303)
    response.delete_cookie(PERSON_COOKIE, path="/me")
    return response
