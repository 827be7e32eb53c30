"""API keys of the caller's own tenant, for its admins (the CLI manages every tenant's)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from facekeeper.api import bodies, schemas
from facekeeper.api.app import API_PREFIX, allow, context
from facekeeper.api.auth import Caller

router = APIRouter(prefix=f"{API_PREFIX}/keys", tags=["keys"])


@router.get("", response_model=list[schemas.ApiKeyInfo])
def list_keys(request: Request, caller: Annotated[Caller, Depends(allow("keys.manage"))]) -> list[schemas.ApiKeyInfo]:
    """Active keys of the tenant (ids, roles, purposes, labels; never a secret)."""
    return [schemas.ApiKeyInfo.of(k) for k in context(request).keys.list_keys(caller.tenant)]


@router.post("", response_model=schemas.NewApiKey, status_code=201,
             openapi_extra=bodies.openapi_body(schemas.KeyCreate, multipart=False))
async def create_key(request: Request, caller: Annotated[Caller, Depends(allow("keys.manage"))]) -> schemas.NewApiKey:
    """A new key for this tenant; the answer is the only time the key is shown."""
    ctx = context(request)
    body = await bodies.parse_json(request, schemas.KeyCreate)
    ctx.layout.check_purpose(caller.tenant, body.purpose)
    new = await run_in_threadpool(ctx.keys.create, caller.tenant, body.role, body.purpose, body.label)
    return schemas.NewApiKey(key=schemas.ApiKeyInfo.of(new.key), api_key=new.token)


@router.delete("/{key_id}", response_model=schemas.ApiKeyInfo)
def revoke_key(key_id: str, request: Request,
               caller: Annotated[Caller, Depends(allow("keys.manage"))]) -> schemas.ApiKeyInfo:
    """Revoke a key of this tenant, effective at once."""
    return schemas.ApiKeyInfo.of(context(request).keys.revoke(key_id, caller.tenant))
