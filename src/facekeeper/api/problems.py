"""Errors as RFC 9457 problem details (``application/problem+json``), with the CLI's stable codes.

Every ``FacekeeperError`` becomes ``{"type": "urn:facekeeper:problem:<code>", "title", "status", "detail",
"code", ...details}`` with the class's ``http_status``; the SDK turns the code back into the same
exception class. Request validation errors name the offending fields but never echo their values (a
value may be an image or a template). Anything unexpected is a bare 500 whose log line has the exception
type and where it happened, not its message, which could carry data.
"""

from __future__ import annotations

import logging
import traceback
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from facekeeper.errors import FacekeeperError

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:facekeeper:problem:"
log = logging.getLogger("facekeeper.api")

_HTTP_CODES = {401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
               406: "not-acceptable", 413: "request-too-large", 415: "unsupported-media-type",
               429: "rate-limited"}


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    body = {"type": TYPE_PREFIX + code, "title": HTTPStatus(status).phrase, "status": status, "detail": detail,
            "code": code, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def from_error(exc: FacekeeperError) -> JSONResponse:
    headers = None
    retry = exc.details.get("retry_after")
    if retry is not None:
        headers = {"Retry-After": str(retry)}
    return problem(exc.http_status, exc.code, exc.message, headers, **exc.details)


async def _facekeeper(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FacekeeperError)
    return from_error(exc)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "problem": e.get("msg", "")}
              for e in exc.errors()]
    return problem(422, "invalid-input", "the request does not have the expected fields: see 'fields'",
                   fields=fields)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http-error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem(exc.status_code, code, detail, dict(exc.headers) if exc.headers else None)


async def unexpected(scope: Scope, exc: Exception) -> JSONResponse:
    """A bare 500; the log line has the exception type and where it was raised, never its message."""
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    place = f"{where[0].filename}:{where[0].lineno}" if where else "?"
    route = getattr(scope.get("route"), "path", "unmatched")
    log.error("internal error %s at %s on %s %s", type(exc).__name__, place, scope.get("method", ""), route)
    return problem(500, "internal-error", "the service failed to answer: the error is logged (without data)")


def install(app: FastAPI) -> None:
    app.add_exception_handler(FacekeeperError, _facekeeper)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
