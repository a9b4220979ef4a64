"""`POST /v1/oauth2/revoke` answers what the OpenAPI document says: 200 with no body."""

from __future__ import annotations

import httpx

from openpitrix.gateway import create_app
from openpitrix.settings import Settings


def test_the_document_promises_an_empty_200() -> None:
    spec = create_app(Settings()).openapi()
    ok = spec["paths"]["/v1/oauth2/revoke"]["post"]["responses"]["200"]
    assert "content" not in ok, ok  # no media type, no schema: nothing to parse
    assert ok["description"]


async def test_revoking_answers_200_with_no_body_and_no_content_type(
    anon: httpx.AsyncClient,
) -> None:
    for token in ("not-a-token", "x" * 64):
        resp = await anon.post("/v1/oauth2/revoke", data={"token": token})
        assert resp.status_code == 200
        assert resp.content == b""
        assert "content-type" not in resp.headers
        assert resp.headers["cache-control"] == "no-store"
