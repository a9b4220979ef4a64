"""Request body size limits, enforced before and while a body is read."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openpitrix.api.errors import error_response

# Put on a route that takes an upload (`openapi_extra=UPLOAD`): its body may reach the upload
# limit instead of the JSON one, and the OpenAPI document says so.
UPLOAD: dict[str, Any] = {"x-upload": True}


class BodyTooLarge(HTTPException):
    # An HTTPException because FastAPI re-raises those from body parsing as they are (any other
    # error there becomes a 400), so the app's handler renders it in the one error shape.
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")
        self.details = {"max_bytes": limit}


class BodyLimitMiddleware:
    """Refuse a body over the limit with 413: at once when Content-Length says so (nothing of
    it is read), else as soon as the chunks received pass it.

    The check sits in `receive`, not on the request's arrival, so that a route that checks the
    token first (AuthenticatedRoute) answers a caller without one 401 and never reads the body.
    Starlette's RequestBodyLimitMiddleware is close, but answers plain text and turns any early
    answer (that 401) into its 413."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    def _limit(self, scope: Scope) -> int:
        # The route is known by the time the body is read: the router put it in the scope.
        route = scope.get("route")
        extra = getattr(route, "openapi_extra", None) or {}
        return self.max_upload_bytes if extra.get("x-upload") else self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            limit = self._limit(scope)
            if declared is not None and declared > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge as exc:
            # Read outside a route's error handling (e.g. by a middleware): answer here.
            if started:
                raise
            response = error_response(413, "payload_too_large", str(exc.detail), exc.details)
            await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before we see it
    return None
