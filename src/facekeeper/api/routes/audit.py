"""What auditors read: the audit chain (verify, signed export), the compliance report, receipt checks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from facekeeper.api import bodies, schemas
from facekeeper.api.app import API_PREFIX, allow, run
from facekeeper.api.auth import Caller
from facekeeper.service import Service

router = APIRouter(prefix=API_PREFIX, tags=["audit"])
Authed = Annotated[Caller, Depends(allow())]


@router.get("/audit/verify", response_model=schemas.ChainReportOut)
async def verify_audit(request: Request, caller: Authed) -> schemas.ChainReportOut:
    """Recompute the keyed chain; ``ok`` false names the first broken entry."""
    return schemas.ChainReportOut.model_validate((await run(request, caller, Service.verify_audit)).to_dict())


@router.get("/audit/export", response_model=dict[str, Any])
async def export_audit(request: Request, caller: Authed,
                       since: Annotated[float | None, Query(description="epoch seconds")] = None) -> dict[str, Any]:
    """Entries since a time with the chain status, signed (Ed25519) for offline checking."""
    doc: dict[str, Any] = await run(request, caller, Service.export_audit, since)
    return doc


@router.get("/compliance", response_model=dict[str, Any])
async def compliance(request: Request, caller: Authed) -> dict[str, Any]:
    """Per purpose: consented and enrolled people, templates, credentials; expiring consents; the next
    sweep; the audit chain; a disk scan for photos and plaintext templates; the filing threshold."""
    report: dict[str, Any] = await run(request, caller, Service.compliance_report)
    return report


@router.post("/receipts/verify", response_model=schemas.ReceiptChecked,
             openapi_extra=bodies.openapi_body(schemas.ReceiptCheckIn, multipart=False))
async def verify_receipt(request: Request, caller: Authed) -> schemas.ReceiptChecked:
    """Check an erasure receipt's or audit export's signature (this tenant's key unless one is given)."""
    body = await bodies.parse_json(request, schemas.ReceiptCheckIn)
    doc = await run(request, caller, Service.verify_receipt, body.document, body.public_key)
    return schemas.ReceiptChecked(valid=True, type=doc.get("type"))
