"""OAuth2 grants of the token endpoint: password and refresh_token."""

from __future__ import annotations

from dataclasses import dataclass

from openpitrix.db.engine import Database
from openpitrix.iam import clients, passwords, service, tokens
from openpitrix.iam.models import User
from openpitrix.iam.schemas import TokenResponse, UserStatus
from openpitrix.iam.tokens import AccessTokens
from openpitrix.settings import Settings


@dataclass(frozen=True)
class GrantRefused:
    """An RFC 6749 §5.2 error; returned rather than raised so revocations still commit."""

    error: str
    description: str


_BAD_LOGIN = GrantRefused("invalid_grant", "invalid username or password")


def _answer(signer: AccessTokens, user: User, refresh_token: str) -> TokenResponse:
    return TokenResponse(
        access_token=signer.issue(user.user_id, user.role),
        expires_in=signer.ttl_seconds,
        refresh_token=refresh_token,
    )


async def password_grant(
    db: Database, signer: AccessTokens, settings: Settings, username: str, password: str
) -> TokenResponse | GrantRefused:
    """Log in with email and password. Unknown email and wrong password give one answer in
    about the same time."""
    if len(password) > passwords.MAX_LENGTH:
        # No stored password is this long; refusing early keeps huge inputs off the hasher.
        return _BAD_LOGIN
    # Verification runs between two short transactions: argon2 costs tens of milliseconds,
    # and on SQLite holding the write lock that long would stall every other writer.
    async with db.read_session() as session:
        user = await service.find_live_user(session, username)
    known_hash = user.password_hash if user is not None else None
    if not await passwords.verify_password_async(known_hash, password) or user is None:
        return _BAD_LOGIN
    new_hash = None
    if passwords.needs_rehash(user.password_hash):
        new_hash = await passwords.hash_password_async(password)
    async with db.transaction() as session:
        fresh = await session.get(User, user.user_id)
        # The password may have changed, or the user been deleted, while we verified.
        if (
            fresh is None
            or fresh.status != UserStatus.ACTIVE
            or fresh.password_hash != user.password_hash
        ):
            return _BAD_LOGIN
        if new_hash is not None:
            fresh.password_hash = new_hash
        refresh = await tokens.issue_refresh_token(
            session, fresh.user_id, settings.auth.refresh_token_ttl_seconds
        )
    return _answer(signer, fresh, refresh)


async def refresh_grant(
    db: Database, signer: AccessTokens, settings: Settings, refresh_token: str
) -> TokenResponse | GrantRefused:
    async with db.transaction() as session:
        rotated = await tokens.rotate_refresh_token(
            session, refresh_token, settings.auth.refresh_token_ttl_seconds
        )
        if isinstance(rotated, tokens.RotationRefused):
            # Commit anyway: a reuse detection has just revoked the token's family.
            return GrantRefused("invalid_grant", rotated.reason)
        user = await session.get(User, rotated.user_id)
        if user is None or user.status != UserStatus.ACTIVE:
            # Deleting a user revokes their tokens; this guards a race with that revocation.
            await tokens.revoke_user_tokens(session, rotated.user_id)
            return GrantRefused("invalid_grant", "refresh token is invalid")
    return _answer(signer, user, rotated.refresh_token)


async def client_credentials_grant(
    db: Database, signer: AccessTokens, client_id: str, client_secret: str
) -> TokenResponse | GrantRefused:
    """An API client's login: an access token acting as its user, and no refresh token
    (RFC 6749 §4.4.3; the client holds its secret and simply asks again)."""
    async with db.read_session() as session:
        found = await clients.authenticate_client(session, client_id, client_secret)
    if found is None:
        return GrantRefused("invalid_client", "client authentication failed")
    client, user = found
    return TokenResponse(
        access_token=signer.issue(user.user_id, user.role, client_id=client.client_id),
        expires_in=signer.ttl_seconds,
    )


async def revoke_token(db: Database, token: str) -> None:
    """RFC 7009 revocation of a refresh token (logout): its whole login family ends. Unknown
    tokens are ignored, as the RFC asks, so the answer reveals nothing."""
    async with db.transaction() as session:
        await tokens.revoke_by_token(session, token)
