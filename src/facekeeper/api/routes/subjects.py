"""Subjects: list, show, erase (with a signed receipt), and the subject access export.

Subject ids are path segments that may themselves hold '/' (``{subject_id:path}``); the SDK percent-encodes
them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from facekeeper.api import schemas
from facekeeper.api.app import API_PREFIX, allow, run
from facekeeper.api.auth import Caller
from facekeeper.service import Service

router = APIRouter(prefix=API_PREFIX, tags=["subjects"])
Authed = Annotated[Caller, Depends(allow())]


def _subject(info: Any) -> schemas.Subject:
    return schemas.Subject(subject_id=info.subject_id, name=info.name, pseudonym=info.pseudonym,
                           templates=info.templates, created_at=info.created_at,
                           template_dates=list(info.template_dates))


@router.get("/subjects", response_model=list[schemas.Subject])
async def list_subjects(request: Request, caller: Authed) -> list[schemas.Subject]:
    """Enrolled subjects with their template counts (never the templates)."""
    return [_subject(s) for s in await run(request, caller, Service.subjects)]


@router.get("/subjects/{subject_id:path}", response_model=schemas.Subject)
async def show_subject(subject_id: str, request: Request, caller: Authed) -> schemas.Subject:
    return _subject(await run(request, caller, Service.subject, subject_id))


@router.delete("/subjects/{subject_id:path}", response_model=schemas.Erased)
async def erase_subject(subject_id: str, request: Request, caller: Authed) -> schemas.Erased:
    """The right to erasure: the subject's key is destroyed; the answer holds the signed receipt."""
    return schemas.Erased.model_validate(await run(request, caller, Service.delete, subject_id))


@router.get("/subject-access/{subject_id:path}", response_model=dict[str, Any])
async def export_subject(subject_id: str, request: Request, caller: Authed) -> dict[str, Any]:
    """Subject access request: everything held about the person, without the templates."""
    result: dict[str, Any] = await run(request, caller, Service.export_subject, subject_id)
    return result
