"""The OAuth2 token endpoint and bearer checks: grants, rotation, theft detection, tampering."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import httpx
import jwt

from openpitrix.db.engine import Database
from openpitrix.settings import AuthSettings, Settings
from tests.conftest import LiveServer, make_settings
from tests.helpers import assert_error
from tests.iam.conftest import Account, login, make_user, token_request


def assert_oauth_error(resp: httpx.Response, error: str) -> dict[str, str]:
    assert resp.status_code == 400, resp.text
    body: dict[str, str] = resp.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == error
    assert resp.headers["cache-control"] == "no-store"
    return body


async def assert_unauthorized(client: httpx.AsyncClient, token: str) -> None:
    resp = await client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert_error(resp, 401, "unauthorized")
    assert resp.headers["www-authenticate"].startswith("Bearer")


async def test_password_grant_answers_a_bearer_pair_that_authenticates(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await make_user(db)
    resp = await token_request(
        client, grant_type="password", username=account.email.upper(), password=account.password
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert resp.headers["cache-control"] == "no-store"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == account.user_id
    assert claims["role"] == "user"
    assert claims["typ"] == "access"
    assert claims["iss"] == "openpitrix"
    assert claims["exp"] - claims["iat"] == 900
    assert claims["jti"]

    me = await client.get(
        "/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200, me.text
    assert me.json()["user_id"] == account.user_id
    assert "password_hash" not in me.json()


async def test_wrong_password_and_unknown_user_get_the_same_answer(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await make_user(db)
    wrong = await token_request(
        client, grant_type="password", username=account.email, password="not-the-password"
    )
    unknown = await token_request(
        client, grant_type="password", username="nobody-x@example.org", password="whatever-1"
    )
    assert assert_oauth_error(wrong, "invalid_grant") == assert_oauth_error(
        unknown, "invalid_grant"
    )


async def test_malformed_token_requests_get_oauth_errors(client: httpx.AsyncClient) -> None:
    assert_oauth_error(await token_request(client), "invalid_request")
    # OAuth2 is form-encoded; a JSON body carries no usable parameters.
    json_body = {"grant_type": "password", "username": "a@b", "password": "whatever-1"}
    assert_oauth_error(await client.post("/v1/oauth2/token", json=json_body), "invalid_request")
    assert_oauth_error(await token_request(client, grant_type="password"), "invalid_request")
    assert_oauth_error(await token_request(client, grant_type="refresh_token"), "invalid_request")
    assert_oauth_error(
        await token_request(client, grant_type="authorization_code", code="x"),
        "unsupported_grant_type",
    )
    assert_oauth_error(
        await token_request(client, grant_type="refresh_token", refresh_token="made-up"),
        "invalid_grant",
    )


async def test_refresh_rotates_the_token(client: httpx.AsyncClient, db: Database) -> None:
    account = await login(client, await make_user(db))
    resp = await token_request(
        client, grant_type="refresh_token", refresh_token=account.refresh_token
    )
    assert resp.status_code == 200, resp.text
    second = resp.json()
    assert second["refresh_token"] != account.refresh_token
    me = await client.get(
        "/v1/users/me", headers={"Authorization": f"Bearer {second['access_token']}"}
    )
    assert me.json()["user_id"] == account.user_id
    # The successor works in turn.
    third = await token_request(
        client, grant_type="refresh_token", refresh_token=second["refresh_token"]
    )
    assert third.status_code == 200, third.text


async def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await login(client, await make_user(db))
    other_login = await login(client, Account(account.user_id, account.email, account.password))
    rotated = await token_request(
        client, grant_type="refresh_token", refresh_token=account.refresh_token
    )
    successor = rotated.json()["refresh_token"]

    reuse = await token_request(
        client, grant_type="refresh_token", refresh_token=account.refresh_token
    )
    assert_oauth_error(reuse, "invalid_grant")
    # The thief may hold the successor: it dies too.
    assert_oauth_error(
        await token_request(client, grant_type="refresh_token", refresh_token=successor),
        "invalid_grant",
    )
    # Another login of the same user (another family) is untouched.
    ok = await token_request(
        client, grant_type="refresh_token", refresh_token=other_login.refresh_token
    )
    assert ok.status_code == 200, ok.text


async def test_missing_bearer_token_is_401_with_challenge(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/users/me")
    assert_error(resp, 401, "unauthorized")
    assert resp.headers["www-authenticate"] == "Bearer"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_tampered_tokens_are_refused(client: httpx.AsyncClient, member: Account) -> None:
    header, payload, signature = member.access_token.split(".")
    # Flip a character in the middle: the last one may only carry padding bits.
    i = len(signature) // 2
    flipped = signature[:i] + ("A" if signature[i] != "A" else "B") + signature[i + 1 :]
    await assert_unauthorized(client, f"{header}.{payload}.{flipped}")

    claims = jwt.decode(member.access_token, options={"verify_signature": False})
    await assert_unauthorized(client, jwt.encode(claims, "another-key-" * 4, algorithm="HS256"))

    promoted = {**claims, "role": "admin"}
    await assert_unauthorized(client, f"{header}.{_b64(promoted)}.{signature}")

    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    await assert_unauthorized(client, unsigned)

    await assert_unauthorized(client, "not-a-jwt")
    # And the genuine token still works, so the refusals above are about tampering.
    ok = await client.get("/v1/users/me", headers=member.headers)
    assert ok.status_code == 200


async def test_expired_access_token_is_401(
    database_url: str, nats_url: str, tmp_path: Path, db: Database
) -> None:
    settings: Settings = make_settings(
        database_url, nats_url, tmp_path / "data", auth=AuthSettings(access_token_ttl_seconds=3)
    )
    async with (
        LiveServer(settings, run_workers=False) as live,
        httpx.AsyncClient(base_url=live.url) as client,
    ):
        account = await login(client, await make_user(db))
        # A JWT's exp is in whole seconds (truncated), so the token lives 2-3 s: long enough for
        # this first call on a busy machine, and certainly over after 3.1 s.
        assert (await client.get("/v1/users/me", headers=account.headers)).status_code == 200
        await asyncio.sleep(3.1)
        resp = await client.get("/v1/users/me", headers=account.headers)
        assert_error(resp, 401, "unauthorized")
        assert resp.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        # The refresh token outlives it and gets a fresh access token.
        again = await token_request(
            client, grant_type="refresh_token", refresh_token=account.refresh_token
        )
        assert again.status_code == 200, again.text
