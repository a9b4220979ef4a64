"""Test identities: the shared signing key, tokens minted with it, users made in the database."""

from __future__ import annotations

import uuid

from openpitrix.db.engine import Database
from openpitrix.iam.schemas import Role
from openpitrix.iam.service import create_user
from openpitrix.iam.tokens import AccessTokens

# One signing key for every test server and process, so a token minted once works against
# all of them.
TEST_JWT_SECRET = "openpitrix-tests-signing-key-" + "0" * 32


def mint_token(user_id: str, role: Role, ttl_seconds: int = 6 * 3600) -> str:
    """An access token every test server accepts (they share TEST_JWT_SECRET)."""
    return AccessTokens(TEST_JWT_SECRET.encode(), ttl_seconds).issue(user_id, role)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_account(
    database_url: str, role: Role, group_path: str = "", password: str | None = None
) -> str:
    """A user made straight in the database (no API, no admin needed); returns its id."""
    database = Database(database_url)
    try:
        async with database.transaction() as session:
            user = await create_user(
                session,
                email=f"{role.value}-{uuid.uuid4().hex[:10]}@example.org",
                name=f"Test {role.value}",
                role=role,
                password=password or f"pw-{uuid.uuid4().hex}",
                group_path=group_path,
            )
        return user.user_id
    finally:
        await database.dispose()


async def headers_for(database_url: str, role: Role, group_path: str = "") -> dict[str, str]:
    """Authorization headers of a new user of that role."""
    return bearer(mint_token(await create_account(database_url, role, group_path), role))
