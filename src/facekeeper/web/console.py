"""The console's pages for accounts: sign in, the enrolment desk, subjects, the test page, the audit, the
compliance report, calibration and license, administration.

Routes only translate a form into ``run(request, caller, Service.<op>, ...)`` and the answer into a page;
``Service``'s guard decides (role, purpose, consent) and audits. A refusal is a page that says what was
refused and why, with the status the API would answer.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from markupsafe import Markup
from starlette.datastructures import FormData, UploadFile

from facekeeper import config
from facekeeper.api.app import context, run
from facekeeper.api.keys import NewKey
from facekeeper.engine.quality import QualityReport, check
from facekeeper.errors import FacekeeperError, InvalidInput
from facekeeper.liveness.summary import OUTCOMES as LIVENESS_OUTCOMES
from facekeeper.privacy import ConsentForm, Guardian
from facekeeper.privacy.policy import may
from facekeeper.service import Service
from facekeeper.web import charts
from facekeeper.web.accounts import CONSOLE_ROLES, Session, check_username
from facekeeper.web.common import (
    COOKIE,
    Refused,
    accounts,
    caller,
    check_csrf,
    page,
    problem,
    session_for,
    set_cookie,
)

router = APIRouter(include_in_schema=False)
LOGIN_CSRF = "fk_login"
MAX_PHOTOS = 5
AUDIT_ROWS = 500
SUBJECT_ROWS = 100
GATE_STALE_S = 10.0  # a running gate rewrites its status every second: older than this, it is not running


def settings_of(request: Request, tenant: str) -> config.Settings:
    """The tenant's settings, read for display (purposes, modes, retention, notice); changes go through
    ``Service``."""
    return config.load(context(request).layout.require(tenant))


def need(session: Session, action: str) -> None:
    """A page whose every use needs ``action``: refused in words before anything is shown. The actions
    themselves are still checked (and refusals audited) by ``Service``."""
    if not may(session.role, action):
        raise Refused(403, f"the {session.role} role may not {action}: this page is not for this account")


# -- signing in --------------------------------------------------------------------------------------
@router.get("/console")
def console_root() -> RedirectResponse:
    return RedirectResponse("/console/login", status_code=303)


@router.get("/console/login")
def login_form(request: Request, tenant: str = "") -> HTMLResponse:
    token = secrets.token_urlsafe(16)
    response = page(request, "login.html", None, tenant=tenant, login_csrf=token)
    set_cookie_login(response, request, token)
    return response


def set_cookie_login(response: Response, request: Request, token: str) -> None:
    """Sign-in has no session yet: its form carries a token that must equal this cookie's (double submit)."""
    response.set_cookie(LOGIN_CSRF, token, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        path="/console/login", max_age=3600)


@router.post("/console/login")
async def login(request: Request) -> Response:
    form = await request.form()
    tenant, username = str(form.get("tenant", "")).strip(), str(form.get("username", "")).strip()
    cookie = request.cookies.get(LOGIN_CSRF)
    if not cookie or not secrets.compare_digest(cookie, str(form.get("csrf", ""))):
        return page(request, "login.html", None, 403, tenant=tenant, username=username,
                    login_csrf=cookie or "", error="the sign-in form is stale: reload the page and sign in again")
    try:
        session = accounts(request).login(tenant, username, str(form.get("password", "")),
                                          str(form.get("totp", "")) or None)
    except FacekeeperError as exc:
        return page(request, "login.html", None, exc.http_status, tenant=tenant, username=username,
                    login_csrf=cookie, error=exc.message)
    response = RedirectResponse(f"/console/{session.tenant}", status_code=303)
    set_cookie(response, request, COOKIE, session.token, "/console")
    return response


@router.get("/console/once/{token}")
def once_form(request: Request, token: str) -> HTMLResponse:
    """A one-time login is spent by a button, not by opening the link (a link preview must not spend it)."""
    return page(request, "once.html", None, token=token)


@router.post("/console/once/{token}")
def once(request: Request, token: str) -> Response:
    try:
        session = accounts(request).use_once(token)
    except FacekeeperError as exc:
        return page(request, "error.html", None, exc.http_status, error=exc.message, code=exc.code)
    response = RedirectResponse(f"/console/{session.tenant}/password", status_code=303)
    set_cookie(response, request, COOKIE, session.token, "/console")
    return response


@router.post("/console/{tenant}/logout")
async def logout(request: Request, tenant: str) -> Response:
    session = session_for(request, tenant)
    await check_csrf(request, session)
    accounts(request).logout(session.token)
    response = RedirectResponse(f"/console/login?tenant={tenant}", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


@router.get("/console/{tenant}/password")
def password_form(request: Request, tenant: str) -> HTMLResponse:
    session = session_for(request, tenant)
    account = accounts(request).get(tenant, session.username)
    return page(request, "password.html", session, account=account)


@router.post("/console/{tenant}/password")
async def password(request: Request, tenant: str) -> Response:
    session = session_for(request, tenant)
    form = await check_csrf(request, session)
    store = accounts(request)
    account = store.get(tenant, session.username)
    new, again = str(form.get("new", "")), str(form.get("again", ""))
    try:
        if new != again:
            raise InvalidInput("the two new passwords differ: type the same one twice")
        if account is not None and account.has_password:
            store.login(tenant, session.username, str(form.get("current", "")), str(form.get("totp", "")) or None)
        store.set_password(tenant, session.username, new)
    except FacekeeperError as exc:
        return problem(request, session, exc, "password.html", account=account)
    return page(request, "password.html", session, account=store.get(tenant, session.username),
                message="Password saved.")


@router.get("/console/{tenant}/totp")
def totp_form(request: Request, tenant: str) -> HTMLResponse:
    session = session_for(request, tenant)
    need(session, "keys.manage")
    return page(request, "totp.html", session, secret=None)


@router.post("/console/{tenant}/totp")
async def totp(request: Request, tenant: str) -> HTMLResponse:
    session = session_for(request, tenant)
    need(session, "keys.manage")
    form = await check_csrf(request, session)
    store = accounts(request)
    if form.get("code"):
        try:
            store.confirm_totp(tenant, session.username, str(form["code"]))
        except FacekeeperError as exc:
            return problem(request, session, exc, "totp.html", secret=form.get("secret"))
        return page(request, "totp.html", session, secret=None, message="Two-step sign-in is on for this account.")
    secret = store.start_totp(tenant, session.username)
    uri = f"otpauth://totp/facekeeper:{session.username}@{tenant}?secret={secret}&issuer=facekeeper"
    return page(request, "totp.html", session, secret=secret, uri=uri)


# -- home --------------------------------------------------------------------------------------------
@router.get("/console/{tenant}")
async def home(request: Request, tenant: str) -> HTMLResponse:
    session = session_for(request, tenant)
    values: dict[str, Any] = {"tenant": tenant}
    if may(session.role, "audit.export"):
        try:
            now = time.time()
            doc = await run(request, caller(session), Service.export_audit, now - 14 * 86400)
            values["charts"] = [charts.decisions_per_hour(doc["entries"], now),
                                charts.changes_per_day(doc["entries"], now)]
        except FacekeeperError as exc:
            values["error"] = exc.message
    return page(request, "home.html", session, **values)


# -- operator: the enrolment desk ---------------------------------------------------------------------
@router.get("/console/{tenant}/enrol")
def enrol_form(request: Request, tenant: str) -> HTMLResponse:
    session = session_for(request, tenant)
    need(session, "enroll")
    return page(request, "enrol.html", session, settings=settings_of(request, tenant), form={})


def quality_words(faces: list[dict[str, Any]], settings: config.Settings) -> tuple[bool, list[str]]:
    """Whether this photo would pass the enrolment gate, and why not, in words."""
    if not faces:
        return False, ["no face was found: face the camera, in good light, with nothing covering the face"]
    if len(faces) > 1:
        return False, [f"{len(faces)} faces were found: only the person enrolling may be in the picture"]
    q = faces[0]["quality"]
    report = QualityReport(float(q["eye_distance"]), float(q["sharpness"]), float(q["yaw"]),
                           float(q["roll_degrees"]), str(q["yaw_from"]))
    g = settings.quality
    failed = check(report, min_eye_distance=g.min_eye_distance, min_sharpness=g.min_sharpness, max_yaw=g.max_yaw,
                   max_roll_degrees=g.max_roll_degrees)
    if failed is not None:
        return False, [failed.message()]
    return True, [f"one face, eyes {q['eye_distance']:.0f} px apart, sharpness {q['sharpness']:.0f}, turned"
                  f" {abs(float(q['yaw'])):.2f}, tilted {abs(float(q['roll_degrees'])):.0f} degrees: good to enrol"]


@router.post("/console/{tenant}/enrol/check")
async def enrol_check(request: Request, tenant: str) -> JSONResponse:
    """Live feedback on one photo before enrolling: ``detect`` through the guard (so audited), in words."""
    session = session_for(request, tenant)
    form = await check_csrf(request, session)
    image = form.get("image")
    if not isinstance(image, UploadFile):
        return JSONResponse({"ok": False, "words": ["no photo was sent"]}, status_code=422)
    try:
        faces = await run(request, caller(session), Service.detect, await image.read(), 68)
    except FacekeeperError as exc:
        return JSONResponse({"ok": False, "words": [exc.message]}, status_code=exc.http_status)
    ok, words = quality_words(faces, settings_of(request, tenant))
    return JSONResponse({"ok": ok, "words": words})


async def _photos(form: FormData) -> list[bytes]:
    photos = [await f.read() for f in form.getlist("photos") if isinstance(f, UploadFile) and f.filename]
    photos = [p for p in photos if p]
    if len(photos) > MAX_PHOTOS:
        raise InvalidInput(f"at most {MAX_PHOTOS} photos per enrolment")
    return photos


def _consent_form(form: FormData) -> ConsentForm:
    method, evidence = str(form.get("method", "")).strip(), str(form.get("evidence", "")).strip()
    if not method or not evidence:
        raise InvalidInput("say how consent was given (method) and where its record is (reference)")
    minor = form.get("minor") == "on"
    guardian = None
    if minor:
        relationship, reference = str(form.get("guardian_relationship", "")).strip(), str(
            form.get("guardian_reference", "")).strip()
        if not relationship or not reference:
            raise InvalidInput("a minor's consent needs the guardian's relationship and the reference of their"
                               " signed form")
        guardian = Guardian(relationship, reference, str(form.get("guardian_name", "")).strip() or None)
    return ConsentForm(method, evidence, minor=minor, guardian=guardian,
                       template_updates=form.get("template_updates") == "on")


def credential_kind(form: FormData) -> str:
    """The form's "qr" is the credential store's "token": a random token the QR code carries."""
    return "token" if form.get("kind") == "qr" else "pin"


@router.post("/console/{tenant}/enrol")
async def enrol(request: Request, tenant: str) -> HTMLResponse:
    """Consent for each chosen purpose, then the photos, then (when asked) the person's self-service code."""
    session = session_for(request, tenant)
    form = await check_csrf(request, session)
    settings = settings_of(request, tenant)
    who = caller(session)
    subject_id, name = str(form.get("subject_id", "")).strip(), str(form.get("name", "")).strip() or None
    purposes = [str(p) for p in form.getlist("purposes")]
    values: dict[str, Any] = {"settings": settings, "form": dict(form.multi_items())}
    try:
        if not subject_id:
            raise InvalidInput("give the person's subject id (the reference this site knows them by)")
        if not purposes:
            raise InvalidInput("tick at least one purpose the person consents to")
        if form.get("notice_read") != "on":
            raise InvalidInput("the person must have read the privacy notice (tick the box once they have)")
        photos = await _photos(form)
        if form.get("decline") == "on":
            return await _alternative(request, session, subject_id, purposes, form, settings)
        if not photos:
            raise InvalidInput("take or upload at least one photo, or tick 'declines a face' for a PIN or QR code")
        consent = _consent_form(form)
        for purpose in purposes:
            await run(request, who, Service.grant_consent, subject_id, who.purpose(purpose), consent)
        result = await run(request, who, Service.enroll, photos, subject_id, name, purpose=who.purpose(purposes[0]))
        code = None
        if form.get("self_service") == "on":
            code = accounts(request).issue_self_service(tenant, result.subject_id)
    except FacekeeperError as exc:
        return problem(request, session, exc, "enrol.html", **values)
    return page(request, "enrolled.html", session, result=result, purposes=purposes, code=code, issued=None)


async def _alternative(request: Request, session: Session, subject_id: str, purposes: list[str], form: FormData,
                       settings: config.Settings) -> HTMLResponse:
    """For someone who declines a face: consent recorded as for a face, and a PIN or QR token instead."""
    who = caller(session)
    consent = _consent_form(form)
    kind = credential_kind(form)
    issued = []
    for purpose in purposes:
        await run(request, who, Service.grant_consent, subject_id, who.purpose(purpose), consent)
        issued.append(await run(request, who, Service.issue_credential, subject_id, who.purpose(purpose), kind))
    return page(request, "enrolled.html", session, result=None, subject_id=subject_id, purposes=purposes, code=None,
                issued=issued)


# -- subjects ------------------------------------------------------------------------------------------
@router.get("/console/{tenant}/subjects")
async def subjects(request: Request, tenant: str) -> HTMLResponse:
    """Every enrolled person: pseudonym, purposes, consent state and the date the consent ends."""
    session = session_for(request, tenant)
    try:
        overview = await run(request, caller(session), Service.subjects_overview, SUBJECT_ROWS)
    except FacekeeperError as exc:
        return problem(request, session, exc)
    return page(request, "subjects.html", session, rows=overview.rows, total=overview.total)


@router.get("/console/{tenant}/subject")
async def subject(request: Request, tenant: str, id: str) -> HTMLResponse:
    """One person: what the subject access export holds (consents, templates count, credentials)."""
    session = session_for(request, tenant)
    try:
        doc = await run(request, caller(session), Service.export_subject, id)
    except FacekeeperError as exc:
        return problem(request, session, exc)
    return page(request, "subject.html", session, doc=doc, subject_id=id)


@router.get("/console/{tenant}/subject/export")
async def subject_export(request: Request, tenant: str, id: str) -> Response:
    session = session_for(request, tenant)
    try:
        doc = await run(request, caller(session), Service.export_subject, id)
    except FacekeeperError as exc:
        return problem(request, session, exc)
    return _download(doc, f"subject-access-{doc['subject']['pseudonym']}.json")


def _download(doc: dict[str, Any], filename: str) -> Response:
    return Response(json.dumps(doc, indent=2) + "\n", media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.post("/console/{tenant}/subject/erase")
async def subject_erase(request: Request, tenant: str) -> HTMLResponse:
    session = session_for(request, tenant)
    form = await check_csrf(request, session)
    try:
        erased = await run(request, caller(session), Service.delete, str(form.get("id", "")))
    except FacekeeperError as exc:
        return problem(request, session, exc)
    return page(request, "erased.html", session, erased=erased, receipt=json.dumps(erased["receipt"], indent=2))


@router.post("/console/{tenant}/subject/withdraw")
async def subject_withdraw(request: Request, tenant: str) -> HTMLResponse:
    session = session_for(request, tenant)
    form = await check_csrf(request, session)
    who = caller(session)
    try:
        r = await run(request, who, Service.withdraw_consent, str(form.get("id", "")),
                      who.purpose(str(form.get("purpose", ""))))
    except FacekeeperError as exc:
        return problem(request, session, exc)
    receipt = json.dumps(r.receipt, indent=2) if r.receipt else None
    return page(request, "withdrawn.html", session, result=r, receipt=receipt, subject_id=form.get("id"))


@router.post("/console/{tenant}/subject/self-service")
async def subject_self_service(request: Request, tenant: str) -> HTMLResponse:
    """A reference code and PIN for the person's self-service page. The subject is looked up through the
    guard first (``subject.list``, audited), so only a role that may see the person can hand one out."""
    session = session_for(request, tenant)
    form = await check_csrf(request, session)
    try:
        info = await run(request, caller(session), Service.subject, str(form.get("id", "")))
    except FacekeeperError as exc:
        return problem(request, session, exc)
    code = accounts(request).issue_self_service(tenant, info.subject_id)
    return page(request, "enrolled.html", session, result=None, subject_id=info.subject_id, purposes=[], code=code,
                issued=None)


@router.post("/console/{tenant}/subject/credential")
async def subject_credential(request: Request, tenant: str) -> HTMLResponse:
    """A PIN or QR token for an enrolled or consenting person, for one purpose: shown once (the QR code drawn
    here), as at the enrolment desk; the guard checks the purpose's consent and records the issue."""
    session = session_for(request, tenant)
    form = await check_csrf(request, session)
    who = caller(session)
    subject_id = str(form.get("id", ""))
    kind = credential_kind(form)
    try:
        issued = await run(request, who, Service.issue_credential, subject_id,
                           who.purpose(str(form.get("purpose", ""))), kind)
    except FacekeeperError as exc:
        return problem(request, session, exc)
    return page(request, "enrolled.html", session, result=None, subject_id=subject_id, purposes=[], code=None,
                issued=[issued])


@router.post("/console/{tenant}/subject/revoke-credential")
async def revoke_credential(request: Request, tenant: str) -> Response:
    session = session_for(request, tenant)
    form = await check_csrf(request, session)
    try:
        await run(request, caller(session), Service.revoke_credential, str(form.get("credential_id", "")))
    except FacekeeperError as exc:
        return problem(request, session, exc)
    return RedirectResponse(f"/console/{tenant}/subject?id={form.get('id', '')}", status_code=303)


# -- the test page ---------------------------------------------------------------------------------------
@router.get("/console/{tenant}/test")
def test_form(request: Request, tenant: str) -> HTMLResponse:
    session = session_for(request, tenant)
    return page(request, "test.html", session, settings=settings_of(request, tenant), result=None, form={})


@router.post("/console/{tenant}/test")
async def test(request: Request, tenant: str) -> HTMLResponse:
    """Verify a photo against one enrolled person or identify it among everyone consented for the purpose.
    The answer shows the decision, mode and the target FMR or FPIR; no enrolled photo exists to show."""
    session = session_for(request, tenant)
    form = await check_csrf(request, session)
    who = caller(session)
    values: dict[str, Any] = {"settings": settings_of(request, tenant), "form": dict(form.multi_items()),
                              "result": None}
    try:
        photo = form.get("photo")
        image = await photo.read() if isinstance(photo, UploadFile) else b""
        if not image:
            raise InvalidInput("choose a photo to test")
        purpose = who.purpose(str(form.get("purpose", "")))
        claimed = str(form.get("subject_id", "")).strip()
        if claimed:
            r = await run(request, who, Service.verify, image, None, subject_id=claimed, purpose=purpose)
            values["result"] = {"kind": "verify", "subject_id": claimed, **r.to_dict()}
        else:
            r = await run(request, who, Service.identify, image, None, None, purpose=purpose)
            values["result"] = {"kind": "identify", **r.to_dict()}
    except FacekeeperError as exc:
        return problem(request, session, exc, "test.html", **values)
    return page(request, "test.html", session, **values)


# -- auditor ---------------------------------------------------------------------------------------------
def _epoch(day: str, end: bool = False) -> float | None:
    """A ``YYYY-MM-DD`` date from a filter, as the start (or end) of that UTC day."""
    if not day:
        return None
    try:
        start = time.mktime(time.strptime(day, "%Y-%m-%d")) - time.timezone
    except ValueError:
        raise InvalidInput(f"a date is written YYYY-MM-DD, not {day!r}") from None
    return start + 86400 if end else start


@router.get("/console/{tenant}/audit")
async def audit(request: Request, tenant: str, since: str = "", until: str = "", actor: str = "", action: str = "",
                purpose: str = "", outcome: str = "") -> HTMLResponse:
    """The chain's entries, filtered by time, actor, action, purpose and outcome, with its verification."""
    session = session_for(request, tenant)
    filters = {"since": since, "until": until, "actor": actor, "action": action, "purpose": purpose,
               "outcome": outcome}
    try:
        start, end = _epoch(since), _epoch(until, end=True)
        chain = await run(request, caller(session), Service.verify_audit)
        doc = await run(request, caller(session), Service.export_audit, start)
    except FacekeeperError as exc:
        return problem(request, session, exc, "audit.html", filters=filters, entries=[], chain=None, matched=0,
                       actions=[])
    entries = [e for e in doc["entries"]
               if (end is None or e["at"] < end) and actor.strip() in e["actor"]
               and (not action or e["action"] == action) and (not purpose or (e["purpose"] or "") == purpose)
               and (not outcome or e["outcome"].startswith(outcome))]
    actions = sorted({e["action"] for e in doc["entries"]})
    return page(request, "audit.html", session, filters=filters, entries=list(reversed(entries))[:AUDIT_ROWS],
                matched=len(entries), chain=chain, actions=actions)


@router.get("/console/{tenant}/audit/export")
async def audit_export(request: Request, tenant: str, since: str = "") -> Response:
    """The signed export (Ed25519), as ``facekeeper audit export`` writes it, for offline checking."""
    session = session_for(request, tenant)
    try:
        doc = await run(request, caller(session), Service.export_audit, _epoch(since))
    except FacekeeperError as exc:
        return problem(request, session, exc)
    return _download(doc, f"audit-{tenant}.json")


@router.get("/console/{tenant}/compliance")
async def compliance(request: Request, tenant: str) -> HTMLResponse:
    session = session_for(request, tenant)
    try:
        report = await run(request, caller(session), Service.compliance_report)
    except FacekeeperError as exc:
        return problem(request, session, exc)
    return page(request, "compliance.html", session, report=report)


@router.get("/console/{tenant}/system")
async def system(request: Request, tenant: str) -> HTMLResponse:
    """The license in force, and the calibration the decisions use, with where it came from: the signed
    tables, the site's adopted one, and the DET curve of the last eval recorded in the deployment."""
    session = session_for(request, tenant)
    try:
        status = await run(request, caller(session), Service.license_status)
        calibration = await run(request, caller(session), Service.calibration_status)
    except FacekeeperError as exc:
        return problem(request, session, exc)
    settings = settings_of(request, tenant)
    return page(request, "system.html", session, lic=status.to_dict(), settings=settings, cal=calibration,
                det=_det_chart(calibration["last_eval"]))


def _det_chart(last: dict[str, Any] | None) -> Markup | None:
    """The last eval's DET curve(s) with the measured operating points, or None without a usable record."""
    if not last or "error" in last or not last.get("det"):
        return None
    s = last["summary"]
    marks = [(f"FMR {p['target_fmr']:g}", p["target_fmr"], p["fnmr"]) for p in s["fnmr_at_fmr"]
             if p["threshold"] is not None and p["fnmr"] is not None]
    return charts.det_curve(last["det"], s["genuine_pairs"], s["impostor_pairs"], marks,
                            f"DET curve: {s['dataset']} ({s['genuine_pairs']:,} genuine,"
                            f" {s['impostor_pairs']:,} impostor pairs)")


@router.get("/console/{tenant}/devices")
async def devices(request: Request, tenant: str) -> HTMLResponse:
    """Gates and liveness: each gate's last status and the liveness sessions of the last day by outcome."""
    session = session_for(request, tenant)
    need(session, "devices.status")
    try:
        status = await run(request, caller(session), Service.devices_status)
    except FacekeeperError as exc:
        return problem(request, session, exc)
    return page(request, "devices.html", session, gates=status["gates"], liveness=status["liveness"],
                outcomes=LIVENESS_OUTCOMES, stale_after=GATE_STALE_S)


# -- admin -------------------------------------------------------------------------------------------------
def _admin_values(request: Request, tenant: str) -> dict[str, Any]:
    ctx = context(request)
    return {"settings": settings_of(request, tenant), "keys": ctx.keys.list_keys(tenant),
            "accounts": accounts(request).list_accounts(tenant), "roles": CONSOLE_ROLES, "new_key": None,
            "once": None}


@router.get("/console/{tenant}/admin")
def admin(request: Request, tenant: str) -> HTMLResponse:
    session = session_for(request, tenant)
    need(session, "keys.manage")
    return page(request, "admin.html", session, **_admin_values(request, tenant))


@router.post("/console/{tenant}/admin/key")
async def admin_key(request: Request, tenant: str) -> HTMLResponse:
    """A new API key, shown once; created inside ``manage_api_key`` so the tenant's chain records it."""
    session = session_for(request, tenant)
    form = await check_csrf(request, session)
    ctx = context(request)
    made: list[NewKey] = []
    role, purpose = str(form.get("role", "")), str(form.get("purpose", "")) or None
    label = str(form.get("label", "")).strip() or None

    def create() -> dict[str, str | None]:
        ctx.layout.check_purpose(tenant, purpose)
        made.append(ctx.keys.create(tenant, role, purpose, label))
        return made[0].key.audit_facts()

    try:
        await run(request, caller(session), Service.manage_api_key, "created", create)
    except FacekeeperError as exc:
        return problem(request, session, exc, "admin.html", **_admin_values(request, tenant))
    return page(request, "admin.html", session, **{**_admin_values(request, tenant), "new_key": made[0]})


@router.post("/console/{tenant}/admin/key/revoke")
async def admin_key_revoke(request: Request, tenant: str) -> Response:
    session = session_for(request, tenant)
    form = await check_csrf(request, session)
    ctx = context(request)

    def revoke() -> dict[str, str | None]:
        return ctx.keys.revoke(str(form.get("key_id", "")), tenant).audit_facts()

    try:
        await run(request, caller(session), Service.manage_api_key, "revoked", revoke)
    except FacekeeperError as exc:
        return problem(request, session, exc, "admin.html", **_admin_values(request, tenant))
    return RedirectResponse(f"/console/{tenant}/admin", status_code=303)


@router.post("/console/{tenant}/admin/account")
async def admin_account(request: Request, tenant: str) -> HTMLResponse:
    """A console account with a one-time login link. Accounts are access to the tenant like API keys, so the
    change goes through the same admin-only operation and lands in the chain as ``console:<name>``."""
    session = session_for(request, tenant)
    form = await check_csrf(request, session)
    store = accounts(request)
    username, role = str(form.get("username", "")).strip(), str(form.get("role", ""))
    tokens: list[str] = []

    def create() -> dict[str, str | None]:
        account = store.create(tenant, check_username(username), role)
        tokens.append(store.one_time_login(tenant, account.username))
        return account.audit_facts()

    try:
        await run(request, caller(session), Service.manage_api_key, "created", create)
    except FacekeeperError as exc:
        return problem(request, session, exc, "admin.html", **_admin_values(request, tenant))
    link = f"{str(request.base_url).rstrip('/')}/console/once/{tokens[0]}"
    return page(request, "admin.html", session, **{**_admin_values(request, tenant),
                                                   "once": {"username": username, "link": link}})


@router.post("/console/{tenant}/admin/account/remove")
async def admin_account_remove(request: Request, tenant: str) -> Response:
    session = session_for(request, tenant)
    form = await check_csrf(request, session)
    store = accounts(request)
    username = str(form.get("username", ""))

    def remove() -> dict[str, str | None]:
        if username == session.username:
            raise InvalidInput("an admin cannot remove their own account here: ask another admin")
        return store.remove(tenant, username).audit_facts()

    try:
        await run(request, caller(session), Service.manage_api_key, "revoked", remove)
    except FacekeeperError as exc:
        return problem(request, session, exc, "admin.html", **_admin_values(request, tenant))
    return RedirectResponse(f"/console/{tenant}/admin", status_code=303)


@router.post("/console/{tenant}/admin/notice")
async def admin_notice(request: Request, tenant: str) -> Response:
    session = session_for(request, tenant)
    form = await check_csrf(request, session)
    fields = {f: str(form.get(f, "")).strip() for f in ("version", "controller", "contact", "retention", "rights")}
    try:
        await run(request, caller(session), Service.set_notice, **{k: v for k, v in fields.items() if v})
    except FacekeeperError as exc:
        return problem(request, session, exc, "admin.html", **_admin_values(request, tenant))
    return RedirectResponse(f"/console/{tenant}/admin", status_code=303)
