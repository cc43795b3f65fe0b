"""The one place where exceptions become HTTP responses. No stack trace ever leaves."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ragserve.api.schemas import ErrorBody, ErrorDetail
from ragserve.errors import (
    Conflict,
    DatabaseError,
    DocumentError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RagserveError,
    TooManyRequests,
    UnsupportedMediaType,
)

log = logging.getLogger(__name__)

# How long a client should wait before retrying a request that met an unavailable database:
# short, since a pool reconnects within a second of the server coming back.
RETRY_AFTER_S = 2

STATUS_BY_ERROR: list[tuple[type[RagserveError], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (InvalidInput, 422),
    (TooManyRequests, 429),
    (DocumentError, 422),
    (DatabaseError, 503),
]


def status_of(exc: RagserveError) -> int:
    """The HTTP status of a ragserve error (500 for kinds not listed above)."""
    return next((code for kind, code in STATUS_BY_ERROR if isinstance(exc, kind)), 500)


def error_body(type_: str, message: str) -> dict[str, Any]:
    return ErrorBody(error=ErrorDetail(type=type_, message=message)).model_dump()


async def _ragserve_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RagserveError)
    status = status_of(exc)
    if status >= 500:
        log.error(
            "request failed",
            extra={"event": "http.error", "path": request.url.path, "error": str(exc)},
        )
    headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.retryable and status == 503 else None
    if isinstance(exc, TooManyRequests):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    return JSONResponse(error_body(exc.type, str(exc)), status_code=status, headers=headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", extra={"event": "http.error", "path": request.url.path})
    return JSONResponse(error_body("InternalError", "internal error; see the server log"), 500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RagserveError, _ragserve_error)
    app.add_exception_handler(Exception, _unexpected)
