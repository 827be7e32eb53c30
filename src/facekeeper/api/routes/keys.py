"""API keys of the caller's own tenant, for its admins (the CLI manages every tenant's)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from facekeeper.api import bodies, schemas
from facekeeper.api.app import API_PREFIX, allow, context, run
from facekeeper.api.auth import Caller
from facekeeper.api.keys import ApiKey, NewKey
from facekeeper.service import Service

router = APIRouter(prefix=f"{API_PREFIX}/keys", tags=["keys"])


@router.get("", response_model=list[schemas.ApiKeyInfo])
def list_keys(request: Request, caller: Annotated[Caller, Depends(allow("keys.manage"))]) -> list[schemas.ApiKeyInfo]:
    """Active keys of the tenant (ids, roles, purposes, labels; never a secret)."""
    return [schemas.ApiKeyInfo.of(k) for k in context(request).keys.list_keys(caller.tenant)]


@router.post("", response_model=schemas.NewApiKey, status_code=201,
             openapi_extra=bodies.openapi_body(schemas.KeyCreate, multipart=False))
async def create_key(request: Request, caller: Annotated[Caller, Depends(allow())]) -> schemas.NewApiKey:
    """A new key for this tenant; the answer is the only time the key is shown."""
    ctx = context(request)
    body = await bodies.parse_json(request, schemas.KeyCreate)
    made: list[NewKey] = []

    def create() -> dict[str, str | None]:
        ctx.layout.check_purpose(caller.tenant, body.purpose)
        made.append(ctx.keys.create(caller.tenant, body.role, body.purpose, body.label))
        return made[0].key.audit_facts()

    await run(request, caller, Service.manage_api_key, "created", create)
    return schemas.NewApiKey(key=schemas.ApiKeyInfo.of(made[0].key), api_key=made[0].token)


@router.delete("/{key_id}", response_model=schemas.ApiKeyInfo)
async def revoke_key(key_id: str, request: Request, caller: Annotated[Caller, Depends(allow())]) -> schemas.ApiKeyInfo:
    """Revoke a key of this tenant, effective at once."""
    revoked: list[ApiKey] = []

    def revoke() -> dict[str, str | None]:
        revoked.append(context(request).keys.revoke(key_id, caller.tenant))
        return revoked[0].audit_facts()

    await run(request, caller, Service.manage_api_key, "revoked", revoke)
    return schemas.ApiKeyInfo.of(revoked[0])

