"""Errors as RFC 9457 problem details (``application/problem+json``), with the CLI's stable codes.

Every ``FacekeeperError`` becomes ``{"type": "urn:facekeeper:problem:<code>", "title", "status", "detail",
"code", ...details}`` with the class's ``http_status``; the SDK turns the code back into the same
exception class. Request validation errors name the offending fields (a few) but never echo their values
(a value may be an image or a template). Anything unexpected is a bare 500 logged with its traceback:
every frame and exception type, in this process and in the worker process it came from, but no exception
message, which could carry data.
"""

from __future__ import annotations

import logging
import re
import traceback
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from facekeeper.api.bodies import problems_of
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
    return problem(422, "invalid-input", "the request does not have the expected fields: see 'fields'",
                   **problems_of(list(exc.errors())))


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http-error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem(exc.status_code, code, detail, dict(exc.headers) if exc.headers else None)


async def unexpected(scope: Scope, exc: BaseException) -> JSONResponse:
    """A bare 500, logged with ``traceback_without_data``."""
    route = getattr(scope.get("route"), "path", "unmatched")
    log.error("internal error %s on %s %s\n%s", type(exc).__name__, scope.get("method", ""), route,
              traceback_without_data(exc))
    return problem(500, "internal-error", "the service failed to answer: the error is logged (without data)")


# A worker's traceback arrives as text (``concurrent.futures`` attaches it as the ``__cause__``): only
# these lines of it are kept; an exception line is cut to its type, and a message's other lines are dropped.
_FRAME = re.compile(r'  File "[^"\n]*", line \d+, in [^\s]+')
_CHAINS = ("Traceback (most recent call last):",
           "The above exception was the direct cause of the following exception:",
           "During handling of the above exception, another exception occurred:")
_EXCEPTION = re.compile(r"([A-Za-z_][\w.]*)(:|$)")


def traceback_without_data(exc: BaseException) -> str:
    """Where ``exc`` (and each exception chained to it) was raised: every frame with its source line and the
    exception types, never a message or a local variable, which could hold an image, template or key."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts = []
    for link in reversed(chain):
        if type(link).__name__ == "_RemoteTraceback":
            parts.append("in the worker process:\n" + _remote(str(link)))
            continue
        frames = traceback.format_list(traceback.extract_tb(link.__traceback__))
        parts.append(_CHAINS[0] + "\n" + "".join(frames) + type(link).__qualname__)
    return "\n".join(parts)


def _remote(text: str) -> str:
    kept: list[str] = []
    source = in_message = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in _CHAINS:
            kept.append(stripped)
            source = in_message = False
        elif in_message:
            continue
        elif _FRAME.fullmatch(line):
            kept.append(line)
            source = True
        elif source and line.startswith("    "):
            kept.append(line)
            source = False
        elif kept and not line.startswith(" ") and (match := _EXCEPTION.match(line)):
            kept.append(match.group(1))
            in_message = True
    return "\n".join(kept)


def install(app: FastAPI) -> None:
    app.add_exception_handler(FacekeeperError, _facekeeper)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
