"""Refuse NUL characters in paths, query strings and JSON or form bodies with a 400.

PostgreSQL text cannot hold U+0000 (the driver fails with a 500 on any statement carrying one)
while SQLite stores it: refusing it at the door keeps both databases answering alike."""

from __future__ import annotations

import re

from starlette.responses import JSONResponse
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


async def _refuse_text(scope: Scope, receive: Receive, send: Send) -> None:
    message = "NUL characters (\\u0000) are not accepted in text"
    if scope["path"].startswith(OAUTH_PREFIX):
        # OAuth2 clients expect RFC 6749's error shape from the token endpoints.
        body = {"error": "invalid_request", "error_description": message}
        response = JSONResponse(body, status_code=400, headers={"Cache-Control": "no-store"})
    else:
        response = error_response(400, "invalid_text", message)
    await response(scope, receive, send)


class NulGuardMiddleware:
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
        # The route reads the whole body anyway (and the body size limit applies to `receive`
        # before this): buffering it here costs no extra memory.
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        if _has_nul(content_type, body):
            await _refuse_text(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
