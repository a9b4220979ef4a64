"""One error shape for every failure: {"error": code, "message": sentence, "details": {...}}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from openpitrix.errors import AppError

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    error: str
    message: str
    details: dict[str, Any] = {}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JSONResponse:
    body = ErrorBody(error=code, message=message, details=details or {})
    return JSONResponse(status_code=status, content=body.model_dump())


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": desc}
    for status, desc in (
        (400, "Bad parameter or malformed JSON"),
        (401, "No bearer token, or an invalid or expired one"),
        (403, "The caller's role does not allow this operation"),
        (404, "Not found (also a row the caller may not see)"),
        (409, "Conflict with the current state"),
        (422, "Body validation failed"),
    )
}


def _clean(errors: list[Any]) -> list[dict[str, Any]]:
    # Only location, message and type: never echo inputs back (they may hold secrets).
    return [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": e.get("type"),
        }
        for e in errors
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _clean(list(exc.errors()))
        if any(e["type"] == "json_invalid" for e in errors):
            return error_response(
                400, "invalid_json", "the request body is not valid JSON", {"errors": errors}
            )
        if all(e["loc"] and e["loc"][0] != "body" for e in errors):
            first = errors[0]
            where = ".".join(first["loc"][1:]) or first["loc"][0]
            return error_response(
                400, "invalid_parameter", f"{where}: {first['msg']}", {"errors": errors}
            )
        first = errors[0]
        where = ".".join(first["loc"][1:]) or "body"
        return error_response(
            422, "validation_error", f"{where}: {first['msg']}", {"errors": errors}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "an unexpected error occurred")
