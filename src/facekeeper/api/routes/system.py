"""Health and metrics: what a load balancer and Prometheus ask."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

from facekeeper.api import schemas
from facekeeper.api.app import API_PREFIX, VERSION, allow, context
from facekeeper.api.auth import Caller
from facekeeper.api.metrics import CONTENT_TYPE

router = APIRouter(prefix=API_PREFIX, tags=["system"])


@router.get("/health", response_model=schemas.Health)
def health() -> schemas.Health:
    """Liveness, without a key: says the process answers, and nothing about any tenant."""
    return schemas.Health(status="ok", version=VERSION)


@router.get("/metrics", response_class=PlainTextResponse,
            responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}})
def metrics(request: Request, caller: Annotated[Caller, Depends(allow("metrics.read"))]) -> PlainTextResponse:
    """Prometheus metrics of the caller's tenant: requests, latencies, faces processed, refusals."""
    return PlainTextResponse(context(request).metrics.render(caller.tenant), media_type=CONTENT_TYPE)
