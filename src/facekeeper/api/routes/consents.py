"""Consents: grant (with the notice version shown), list, withdraw (the last one erases the face)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from facekeeper.api import bodies, schemas
from facekeeper.api.app import API_PREFIX, allow, run
from facekeeper.api.auth import Caller
from facekeeper.privacy import ConsentForm, Guardian
from facekeeper.service import Service

router = APIRouter(prefix=f"{API_PREFIX}/consents", tags=["consents"])
Authed = Annotated[Caller, Depends(allow())]


@router.post("", response_model=schemas.ConsentOut, status_code=201,
             openapi_extra=bodies.openapi_body(schemas.ConsentIn, multipart=False))
async def grant(request: Request, caller: Authed) -> schemas.ConsentOut:
    """Record a person's consent for one purpose; a live one for the same purpose is renewed."""
    body = await bodies.parse_json(request, schemas.ConsentIn)
    guardian = Guardian(**body.guardian.model_dump()) if body.guardian else None
    form = ConsentForm(body.method, body.evidence, body.expires_at, body.minor, guardian, body.collected_by,
                       body.age, body.template_updates)
    c = await run(request, caller, Service.grant_consent, body.subject_id, caller.purpose(body.purpose), form)
    return schemas.ConsentOut.model_validate(c.to_dict(time.time()))


@router.get("/{subject_id:path}", response_model=list[schemas.ConsentOut])
async def list_consents(subject_id: str, request: Request, caller: Authed) -> list[schemas.ConsentOut]:
    """A person's consents, live and ended."""
    now = time.time()
    return [schemas.ConsentOut.model_validate(c.to_dict(now)) for c in await run(request, caller, Service.consents,
                                                                                 subject_id)]


@router.delete("/{purpose}/{subject_id:path}", response_model=schemas.Withdrawn)
async def withdraw(purpose: str, subject_id: str, request: Request, caller: Authed) -> schemas.Withdrawn:
    """Withdraw one purpose, at once; withdrawing the last erases the templates (receipt included)."""
    r = await run(request, caller, Service.withdraw_consent, subject_id, caller.purpose(purpose))
    return schemas.Withdrawn.model_validate(r.to_dict(time.time()))
