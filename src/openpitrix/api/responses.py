"""Answers every route can give for platform reasons, documented once for the whole app."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.responses import Response

from openpitrix.api.params import document_query_models

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
    """Add the shared answers to every operation of the app's OpenAPI document, and the
    parameters of the routes' query models (api.params.QueryModel).

    Done on the generated document (FastAPI's way to extend it), not per router, so a route
    added later cannot forget them; an operation's own declaration of the status wins."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        document_query_models(schema, app.routes)
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


def page_response(total: int, items: Sequence[Mapping[str, Any]]) -> Response:
    """A list page (`{"total_count", "items"}`) written straight from the rows a service
    selected, in the route's `response_model` field order: the same bytes pydantic would
    write (UTC times with `Z`), without validating rows the database just gave us (that and
    the dump were ~90 us of a 20-row page). tests/apps/test_list_bodies.py holds it to the
    models' own output."""
    body = orjson.dumps({"total_count": total, "items": items}, option=orjson.OPT_UTC_Z)
    return Response(body, media_type="application/json")
