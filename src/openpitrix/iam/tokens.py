"""Signed JWT access tokens, and opaque refresh tokens stored hashed and rotated per use."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from openpitrix import ids
from openpitrix.crypto import read_or_create_key_file
from openpitrix.db.types import utcnow
from openpitrix.iam.models import RefreshToken
from openpitrix.settings import Settings

log = logging.getLogger(__name__)

ISSUER = "openpitrix"
ALGORITHM = "HS256"
ACCESS_TYPE = "access"
KEY_FILE = "jwt.key"
# Verified access tokens remembered per process (see AccessTokens.decode).
VERIFIED_TOKENS = 10_000


# --- signing key -------------------------------------------------------------------------------


def load_signing_key(settings: Settings) -> bytes:
    """The configured secret, else the key file in the data dir (made on first use)."""
    if settings.auth.jwt_secret is not None:
        return settings.auth.jwt_secret.get_secret_value().encode()
    return read_or_create_key(settings.data_dir / KEY_FILE)


def read_or_create_key(path: Path) -> bytes:
    """Every process sharing the data dir must sign with the same key (created once, 0600)."""
    key = read_or_create_key_file(path, lambda: (secrets.token_hex(32) + "\n").encode()).decode()
    if len(key) < 32:
        raise RuntimeError(f"{path} holds no usable signing key; delete it to make a new one")
    return key.encode()


# --- access tokens -----------------------------------------------------------------------------


class InvalidToken(Exception):
    """Missing, expired, tampered, or not an access token. The reason is not shown to clients."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    role: str
    jti: str
    issued_at: datetime
    expires_at: datetime
    client_id: str | None = None


class AccessTokens:
    """Issues and checks access tokens; one per process, made in the app lifespan."""

    def __init__(self, key: bytes, ttl_seconds: int) -> None:
        self._key = key
        self.ttl_seconds = ttl_seconds
        # Tokens whose signature and claims were checked, by their exact text: the same bytes
        # verify the same way every time, so only the expiry is checked again. (PyJWT's
        # decode was ~60 us of every authenticated request.) Not a cache of the caller's
        # rights: the user's and client's facts are still read for every request.
        self._verified: dict[str, AccessClaims] = {}

    def issue(self, user_id: str, role: str, *, client_id: str | None = None) -> str:
        now = utcnow()
        claims: dict[str, object] = {
            "iss": ISSUER,
            "sub": user_id,
            "role": role,
            "typ": ACCESS_TYPE,
            "jti": secrets.token_hex(16),
            "iat": now,
            "exp": now + timedelta(seconds=self.ttl_seconds),
        }
        if client_id is not None:
            claims["cid"] = client_id
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def decode(self, token: str) -> AccessClaims:
        claims = self._verified.get(token)
        if claims is not None:
            if claims.expires_at.timestamp() > time.time():
                return claims
            del self._verified[token]
            raise InvalidToken("ExpiredSignatureError")
        claims = self._decode(token)
        if len(self._verified) >= VERIFIED_TOKENS:
            self._verified.clear()  # rare: as many live tokens as this in one process
        self._verified[token] = claims
        return claims

    def _decode(self, token: str) -> AccessClaims:
        try:
            # The algorithm list is fixed: a token claiming `alg: none` or an RSA/HMAC
            # confusion is refused before its signature is even looked at.
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "jti", "iss"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from exc
        # A refresh-like or foreign token signed with the same key must not act as an access.
        if claims.get("typ") != ACCESS_TYPE or not isinstance(claims.get("sub"), str):
            raise InvalidToken("not an access token")
        return AccessClaims(
            user_id=claims["sub"],
            role=str(claims.get("role", "")),
            jti=str(claims["jti"]),
            issued_at=datetime.fromtimestamp(claims["iat"], tz=UTC),
            expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC),
            client_id=str(claims["cid"]) if claims.get("cid") is not None else None,
        )


# --- refresh tokens ----------------------------------------------------------------------------


def hash_refresh_token(token: str) -> str:
    """SHA-256 is enough here (unlike passwords): the token has 256 bits of entropy."""
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_refresh_token(
    session: AsyncSession,
    user_id: str,
    ttl_seconds: int,
    *,
    family_id: str | None = None,
    parent_id: str | None = None,
) -> str:
    """Store a new refresh token's hash and return the token itself (shown once)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        RefreshToken(
            token_id=ids.new_id(ids.REFRESH),
            user_id=user_id,
            token_hash=hash_refresh_token(token),
            family_id=family_id or ids.new_id(ids.REFRESH_FAMILY),
            parent_id=parent_id,
            expires_at=now + timedelta(seconds=ttl_seconds),
            create_time=now,
        )
    )
    await session.flush()
    return token


@dataclass(frozen=True)
class Rotated:
    user_id: str
    refresh_token: str


@dataclass(frozen=True)
class RotationRefused:
    reason: str


async def rotate_refresh_token(
    session: AsyncSession, token: str, ttl_seconds: int
) -> Rotated | RotationRefused:
    """Spend a refresh token: it is revoked and a successor issued in its family.

    Refusals are returned, not raised, so the caller's transaction still commits a family
    revocation made here.
    """
    digest = hash_refresh_token(token)
    row = (
        await session.execute(select(RefreshToken).where(col(RefreshToken.token_hash) == digest))
    ).scalar_one_or_none()
    # The lookup is by hash, so timing says nothing about the token; compare again anyway in
    # constant time in case a database collation ever matched loosely.
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return RotationRefused("refresh token is invalid")
    now = utcnow()
    if row.revoked_at is not None:
        # A rotated token came back: either the client or a thief holds a stale copy. Which
        # one cannot be told, so every token of the login is revoked and the user logs in again.
        await revoke_family(session, row.family_id)
        log.warning(
            "refresh token reused; family revoked user_id=%s family_id=%s",
            row.user_id,
            row.family_id,
        )
        return RotationRefused("refresh token is invalid")
    if row.expires_at <= now:
        return RotationRefused("refresh token has expired")
    # Guarded UPDATE: of two requests spending the same token at once, one wins; the loser is
    # treated as a reuse.
    spent = await session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.token_id) == row.token_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    if getattr(spent, "rowcount", 0) != 1:
        await revoke_family(session, row.family_id)
        return RotationRefused("refresh token is invalid")
    new_token = await issue_refresh_token(
        session, row.user_id, ttl_seconds, family_id=row.family_id, parent_id=row.token_id
    )
    return Rotated(user_id=row.user_id, refresh_token=new_token)


async def revoke_family(session: AsyncSession, family_id: str) -> None:
    await session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )


async def revoke_user_tokens(session: AsyncSession, user_id: str) -> None:
    """Logout everywhere: on password change and when the user is deleted."""
    await session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.user_id) == user_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )


async def revoke_by_token(session: AsyncSession, token: str) -> None:
    row = (
        await session.execute(
            select(RefreshToken).where(col(RefreshToken.token_hash) == hash_refresh_token(token))
        )
    ).scalar_one_or_none()
    if row is not None:
        await revoke_family(session, row.family_id)
