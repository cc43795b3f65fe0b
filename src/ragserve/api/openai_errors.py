"""Errors of the OpenAI routes in OpenAI's shape and with OpenAI's status codes.

``{"error": {"message", "type", "param", "code"}}``; a bad request (validation included) is
``400``, where the rest of ragserve answers ``422`` in its own shape. :class:`OpenAIRoute`
applies this to the routes that use it, and only to them (docs/OPENAI.md, "Errors").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from ragserve.api.errors import error_headers, status_of
from ragserve.api.openai_schemas import OpenAIErrorBody
from ragserve.api.openai_wire import error_detail
from ragserve.api.schemas import Responses
from ragserve.errors import RagserveError

log = logging.getLogger(__name__)

_TYPE_BY_STATUS = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def openai_error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    type_ = _TYPE_BY_STATUS.get(status) or (
        "invalid_request_error" if status < 500 else "server_error"
    )
    body = error_detail(message, type_, code, param)
    return JSONResponse(body, status_code=status, headers=headers)


def _param_of(loc: tuple[int | str, ...]) -> str:
    """``("body", "messages", 0, "content")`` -> ``messages[0].content``."""
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    param = ""
    for part in parts:
        param += f"[{part}]" if isinstance(part, int) else f".{part}" if param else str(part)
    return param


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    first: dict[str, Any] = next(iter(exc.errors()), {})
    param = _param_of(tuple(first.get("loc", ())))
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        return openai_error(400, "The request body is not valid JSON.", code="invalid_json")
    if kind == "missing":
        message, code = f"Missing required parameter: '{param}'.", "missing_required_parameter"
    else:
        message, code = (
            f"Invalid value for '{param}': {first.get('msg', 'invalid')}.",
            "invalid_value",
        )
    return openai_error(400, message, code=code, param=param or None)


def _ragserve_error(exc: RagserveError) -> JSONResponse:
    status = status_of(exc)
    status = 400 if status == 422 else status  # OpenAI: a bad request is 400
    if status >= 500:
        log.error("openai request failed", extra={"event": "http.error", "error": str(exc)})
    # WWW-Authenticate of a 401, Retry-After of a 429 (the limit's own) or of a 503.
    headers = error_headers(exc, status)
    return openai_error(status, str(exc), code=_snake_case(exc.type), headers=headers)


def _snake_case(name: str) -> str:
    """``DatabaseError`` -> ``database_error``: OpenAI's codes are snake_case."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class OpenAIRoute(APIRoute):
    """A route whose errors are OpenAI's ``{"error": {"message", "type", "param", "code"}}``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def openai_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _validation_error(exc)
            except RagserveError as exc:
                return _ragserve_error(exc)
            except HTTPException:
                raise
            except Exception:
                log.exception("unexpected error", extra={"event": "http.error"})
                return openai_error(500, "internal error; see the server log")

        return openai_handler


def error_doc(description: str) -> dict[str, Any]:
    return {"model": OpenAIErrorBody, "description": description}


OPENAI_ERRORS: Responses = {
    400: error_doc("A bad request, validation errors included (OpenAI's 400, not 422)"),
    404: error_doc("No such model (collection): code model_not_found"),
    503: error_doc("PostgreSQL is unreachable; retry later"),
    # Declared so that FastAPI does not document its own 422 shape for these routes.
    "4XX": error_doc("Any other client error, in OpenAI's shape"),
}


def bad_request(param: str, message: str) -> RequestValidationError:
    """A 400 naming ``param``, raised like FastAPI's own validation errors."""
    return RequestValidationError([{"loc": ("body", param), "msg": message, "type": "value_error"}])
