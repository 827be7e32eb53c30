"""Privacy administration over HTTP: the retention sweep, and the privacy notice (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from facekeeper.api import bodies, schemas
from facekeeper.api.app import API_PREFIX, allow, run
from facekeeper.api.auth import Caller
from facekeeper.service import Service

router = APIRouter(prefix=API_PREFIX, tags=["privacy"])
Authed = Annotated[Caller, Depends(allow())]


@router.post("/sweep", response_model=dict[str, Any])
async def sweep(request: Request, caller: Authed,
                dry_run: Annotated[bool, Query(description="only say what is due")] = False) -> dict[str, Any]:
    """Erase what retention says is due (idempotent; concurrent sweeps take turns)."""
    report: dict[str, Any] = (await run(request, caller, Service.sweep, dry_run=dry_run)).to_dict()
    return report


@router.put("/notice", status_code=204, openapi_extra=bodies.openapi_body(schemas.NoticeIn, multipart=False))
async def set_notice(request: Request, caller: Authed) -> None:
    """Fill in fields of the privacy notice people read before consenting (admin)."""
    body = await bodies.parse_json(request, schemas.NoticeIn)
    await run(request, caller, Service.set_notice, **body.model_dump(exclude_none=True))
