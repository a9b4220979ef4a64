"""NUL characters are refused with a 400 wherever text comes in, on SQLite and PostgreSQL alike
(PostgreSQL cannot store them: without the guard they were 500s there)."""

from __future__ import annotations

import httpx

from tests.helpers import assert_error


async def test_nul_in_a_query_or_path_is_a_bad_parameter(client: httpx.AsyncClient) -> None:
    for url in ("/v1/repos?name=a%00b", "/v1/tasks?search_word=y%00", "/v1/repos/repo-a%00b"):
        error = assert_error(await client.get(url), 400, "invalid_parameter")
        assert "NUL" in error["message"]


async def test_nul_in_json_or_form_text_is_refused(client: httpx.AsyncClient) -> None:
    user = (
        '{"email": "nul@example.org", "name": "a\\u0000b", "role": "user",'
        ' "password": "pw-0123456789"}'
    )
    resp = await client.post(
        "/v1/users", content=user, headers={"Content-Type": "application/json"}
    )
    assert_error(resp, 400, "invalid_text")
    token = await client.post(
        "/v1/oauth2/token",
        data={"grant_type": "password", "username": "a\x00@example.org", "password": "x"},
    )
    # The token endpoints answer in OAuth2's error shape, as their other errors do.
    assert token.status_code == 400
    assert token.json()["error"] == "invalid_request"
    assert "NUL" in token.json()["error_description"]


async def test_an_escaped_backslash_before_u0000_is_plain_text(client: httpx.AsyncClient) -> None:
    # JSON `\\u0000` is a backslash followed by "u0000": no NUL, so the user is made.
    body = (
        '{"email": "slash@example.org", "name": "a\\\\u0000", "role": "user",'
        ' "password": "pw-0123456789"}'
    )
    resp = await client.post(
        "/v1/users", content=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["name"] == "a\\u0000"


async def test_a_body_is_checked_only_after_the_token(anon: httpx.AsyncClient) -> None:
    # The body is looked at as the route reads it: a caller without a token gets 401 whatever
    # the body holds, as for the body size limit.
    body = '{"email": "x@example.org", "name": "a\\u0000b", "role": "user", "password": "p"}'
    resp = await anon.post("/v1/users", content=body, headers={"Content-Type": "application/json"})
    assert_error(resp, 401, "unauthorized")
