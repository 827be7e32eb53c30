"""Templates per model over HTTP: who still lacks a new model's template (admin: subject ids; auditor: pseudonyms)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from facekeeper.api import schemas
from facekeeper.api.app import API_PREFIX, allow, run
from facekeeper.api.auth import Caller
from facekeeper.service import Service

router = APIRouter(prefix=f"{API_PREFIX}/templates", tags=["templates"])
Authed = Annotated[Caller, Depends(allow())]


@router.get("/coverage", response_model=schemas.TemplateCoverage)
async def coverage(request: Request, caller: Authed,
                   purpose: Annotated[str | None, Query(description="one purpose [every declared purpose; a"
                                                                    " purpose-bound key: its own]")] = None,
                   limit: Annotated[int | None, Query(ge=0, description="list at most this many people per"
                                                                        " model [all]")] = None,
                   ) -> schemas.TemplateCoverage:
    """Per purpose and model: how many people hold its templates, how many lack one and who; of those lacking,
    how many a later match may still give one (their consent allows it)."""
    scope = caller.purpose(purpose) if purpose or caller.key_purpose else None
    report = await run(request, caller, Service.template_coverage, scope, limit)
    return schemas.TemplateCoverage.model_validate(report.to_dict())
