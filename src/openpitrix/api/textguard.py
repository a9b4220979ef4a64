"""Refuse NUL characters in paths, query strings and JSON or form bodies with a 400.

PostgreSQL text cannot hold U+0000 (the driver fails with a 500 on any statement carrying one)
while SQLite stores it: refusing it at the door keeps both databases answering alike."""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openpitrix.api.errors import error_response

# A JSON escape of NUL: `\u0000` after an even run of backslashes (an odd run, e.g. `\\u0000`,
# is an escaped backslash followed by the text "u0000").
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
OAUTH_PREFIX = "/v1/oauth2/"
_CHECKED_BODIES = (b"application/json", b"application/x-www-form-urlencoded")


def _has_nul(content_type: bytes, body: bytes) -> bool:
    if b"\x00" in body:
        return True
    if content_type.startswith(b"application/json"):
        return _JSON_NUL.search(body) is not None
    return b"%00" in body


class TextNotAccepted(HTTPException):
    """A body with NUL in its text. Raised from `receive` while the route reads its body: an
    HTTPException because FastAPI passes those from body parsing through as they are."""

    def __init__(self) -> None:
        super().__init__(400, "NUL characters (\\u0000) are not accepted in text")


async def _text_not_accepted(request: Request, exc: Exception) -> Response:
    message = str(exc.detail) if isinstance(exc, HTTPException) else str(exc)
    if request.url.path.startswith(OAUTH_PREFIX):
        # OAuth2 clients expect RFC 6749's error shape from the token endpoints.
        body = {"error": "invalid_request", "error_description": message}
        return JSONResponse(body, status_code=400, headers={"Cache-Control": "no-store"})
    return error_response(400, "invalid_text", message)


class NulGuardMiddleware:
    """Paths and queries are checked on arrival. A JSON or form body is checked as the route
    reads it, not before: a route that checks the token first answers 401 without the body
    being read, and the body size limit (an outer middleware) bounds what is held here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query: bytes = scope.get("query_string", b"")
        if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
            response = error_response(
                400, "invalid_parameter", "NUL characters are not accepted in the path or query"
            )
            await response(scope, receive, send)
            return
        content_type = dict(scope.get("headers") or []).get(b"content-type", b"").lower()
        if not content_type.startswith(_CHECKED_BODIES):
            await self.app(scope, receive, send)
            return
        # Escapes may straddle chunks, so the whole body is checked once its last chunk is in;
        # the route holds the whole body anyway.
        chunks: list[bytes] = []

        async def checked_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False) and _has_nul(content_type, b"".join(chunks)):
                    raise TextNotAccepted
            return message

        await self.app(scope, checked_receive, send)


def install_text_guard(app: FastAPI) -> None:
    """The middleware and the handler that renders its refusal (OAuth2's shape on /v1/oauth2)."""
    app.add_middleware(NulGuardMiddleware)
    app.add_exception_handler(TextNotAccepted, _text_not_accepted)
