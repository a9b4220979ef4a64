"""Identity fixtures: users made straight in the shared database, and logins through the API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import httpx
import pytest

from openpitrix.db.engine import Database
from openpitrix.iam import service
from openpitrix.iam.schemas import Role


@dataclass
class Account:
    user_id: str
    email: str
    password: str
    access_token: str = ""
    refresh_token: str = ""
    headers: dict[str, str] = field(default_factory=dict)


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.org"


async def make_user(db: Database, role: Role = Role.USER, password: str | None = None) -> Account:
    password = password or f"pw-{uuid.uuid4().hex}"
    email = unique_email(role.value)
    async with db.transaction() as session:
        user = await service.create_user(
            session, email=email, name=f"Test {role.value}", role=role, password=password
        )
    return Account(user.user_id, email, password)


async def token_request(client: httpx.AsyncClient, **form: str) -> httpx.Response:
    return await client.post("/v1/oauth2/token", data=form)


async def login(client: httpx.AsyncClient, account: Account) -> Account:
    resp = await token_request(
        client, grant_type="password", username=account.email, password=account.password
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    account.access_token = body["access_token"]
    account.refresh_token = body["refresh_token"]
    account.headers = {"Authorization": f"Bearer {body['access_token']}"}
    return account


@pytest.fixture
async def client(anon: httpx.AsyncClient) -> httpx.AsyncClient:
    """Identity tests say who calls on each request, so their client carries no token."""
    return anon


@pytest.fixture
async def admin(db: Database, client: httpx.AsyncClient) -> Account:
    return await login(client, await make_user(db, Role.ADMIN))


@pytest.fixture
async def member(db: Database, client: httpx.AsyncClient) -> Account:
    return await login(client, await make_user(db, Role.DEVELOPER))
