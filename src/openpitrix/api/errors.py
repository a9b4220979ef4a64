"""One error shape for every failure: {"error": code, "message": sentence, "details": {...}}."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from openpitrix.errors import AppError

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    error: str
    message: str
    details: dict[str, Any] = {}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=code, message=message, details=details or {})
    return JSONResponse(status_code=status, content=body.model_dump(), headers=headers)


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
        (413, "The request body is over the size limit"),
        (422, "Body validation failed"),
        (503, "The database is unreachable; retry after `Retry-After` seconds"),
    )
}

# Raised by SQLAlchemy when the database cannot be reached or a connection broke: the pool
# ran dry, the server refused or closed, SQLite could not open (or lock) its file.
_OUTAGES: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
)


def _from_sqlalchemy(tb: TracebackType | None) -> bool:
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith("sqlalchemy."):
            return True
        tb = tb.tb_next
    return False


def is_database_outage(exc: BaseException) -> bool:
    """Whether `exc` says the database is unreachable (not that a query was wrong)."""
    if isinstance(exc, _OUTAGES):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    # asyncpg's connect lets the socket's own error through (a refused connection is a bare
    # ConnectionRefusedError): an OSError counts when it came up through SQLAlchemy.
    return isinstance(exc, OSError | TimeoutError) and _from_sqlalchemy(exc.__traceback__)


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


def install_error_handlers(app: FastAPI, *, database_retry_after: int = 5) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)

    async def _database(request: Request, exc: Exception) -> JSONResponse:
        if not is_database_outage(exc):
            raise exc  # a bug, not an outage: the 500 handler logs and answers it
        log.warning(
            "database unreachable on %s %s: %s", request.method, request.url.path, type(exc)
        )
        return error_response(
            503,
            "database_unavailable",
            "the database is unreachable; retry later",
            headers={"Retry-After": str(database_retry_after)},
        )

    for outage in (*_OUTAGES, sa_exc.DBAPIError, OSError, TimeoutError):
        app.add_exception_handler(outage, _database)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _clean(list(exc.errors()))
        if any(e["type"] == "json_invalid" for e in errors):
            return error_response(
                400, "invalid_json", "the request body is not valid JSON", {"errors": errors}
            )
        if all(e["loc"] and e["loc"][0] != "body" for e in errors):
            # Query, path and header parameters: 400 naming the parameter (bodies stay 422).
            first = errors[0]
            where = ".".join(first["loc"][1:2]) or first["loc"][0]
            return error_response(
                400,
                "invalid_parameter",
                f"{where}: {first['msg']}",
                {"parameter": where, "errors": errors},
            )
        first = errors[0]
        where = ".".join(first["loc"][1:]) or "body"
        return error_response(
            422, "validation_error", f"{where}: {first['msg']}", {"errors": errors}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        details = getattr(exc, "details", None)
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, str(exc.detail), details, headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "an unexpected error occurred")
