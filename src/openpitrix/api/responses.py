"""Answers every route can give for platform reasons, documented once for the whole app."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

# Operations that touch neither the database nor NATS.
NO_BACKEND = {"healthz"}
ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
# A body over the request size limit is refused before any route reads it.
BODY_TOO_LARGE = {"description": "The request body is over the size limit", "content": ERROR_BODY}
# Every route refuses a query parameter it does not declare, and NUL in a path or query.
BAD_PARAMETER = {
    "description": "`invalid_parameter`: a query parameter the operation does not take, or a "
    "bad value; `details.parameter` names it",
    "content": ERROR_BODY,
}
# The database or NATS being down answers 503 wherever a route needs them.
UNAVAILABLE = {
    "description": "The database or the message bus is unavailable; retry later",
    "content": ERROR_BODY,
}


def document_platform_responses(app: FastAPI) -> None:
    """Add the shared answers to every operation of the app's OpenAPI document.

    Done on the generated document (FastAPI's way to extend it), not per router, so a route
    added later cannot forget them; an operation's own declaration of the status wins."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for methods in schema["paths"].values():
            for operation in methods.values():
                responses = operation["responses"]
                responses.setdefault("400", BAD_PARAMETER)
                if "requestBody" in operation:
                    responses.setdefault("413", BODY_TOO_LARGE)
                if operation["operationId"] not in NO_BACKEND:
                    responses.setdefault("503", UNAVAILABLE)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
