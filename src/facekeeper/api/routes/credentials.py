"""PIN and QR token credentials: the non-face way through the same purpose check."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from facekeeper.api import bodies, schemas
from facekeeper.api.app import API_PREFIX, allow, run
from facekeeper.api.auth import Caller
from facekeeper.service import Service

router = APIRouter(prefix=f"{API_PREFIX}/credentials", tags=["credentials"])
Authed = Annotated[Caller, Depends(allow())]


@router.post("", response_model=schemas.CredentialIssued, status_code=201,
             openapi_extra=bodies.openapi_body(schemas.CredentialIn, multipart=False))
async def issue(request: Request, caller: Authed) -> schemas.CredentialIssued:
    """A PIN or token for anyone, enrolled or not. The secret is in this answer only."""
    body = await bodies.parse_json(request, schemas.CredentialIn)
    i = await run(request, caller, Service.issue_credential, body.subject_id, caller.purpose(body.purpose), body.kind,
                  expires_at=body.expires_at)
    return schemas.CredentialIssued(credential_id=i.credential_id, kind=i.kind, purpose=i.purpose, secret=i.secret,
                                    expires_at=i.expires_at)


@router.post("/check", response_model=schemas.CredentialAccepted,
             openapi_extra=bodies.openapi_body(schemas.CredentialCheckIn, multipart=False))
async def check(request: Request, caller: Authed) -> schemas.CredentialAccepted:
    """A token, or a subject id and PIN, for a purpose: accepted, or 403 ``credential-error``."""
    body = await bodies.parse_json(request, schemas.CredentialCheckIn)
    sid, info = await run(request, caller, Service.check_credential, caller.purpose(body.purpose), token=body.token,
                          subject_id=body.subject_id, pin=body.pin)
    return schemas.CredentialAccepted(accepted=True, subject_id=sid, credential_id=info.id, purpose=info.purpose)


@router.delete("/{credential_id}", response_model=schemas.CredentialRevoked)
async def revoke(credential_id: str, request: Request, caller: Authed) -> schemas.CredentialRevoked:
    await run(request, caller, Service.revoke_credential, credential_id)
    return schemas.CredentialRevoked(revoked=credential_id)
