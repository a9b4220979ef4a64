"""Domain errors carrying an HTTP status and a stable code; one handler renders them all."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Base of every error a client may see: `{"error": code, "message": ..., "details": ...}`."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}


class BadRequest(AppError):
    status_code = 400
    code = "bad_request"


class NotFound(AppError):
    status_code = 404
    code = "not_found"

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident!r} not found", details={"kind": kind, "id": ident})


class Conflict(AppError):
    status_code = 409
    code = "conflict"
