"""Identity tables: users, the hashed refresh tokens issued to them, and API clients."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, text
from sqlmodel import Field, SQLModel

from openpitrix.db.base import Timestamps
from openpitrix.db.types import UTCDateTime, utcnow


class User(Timestamps, table=True):
    __tablename__ = "users"
    __table_args__ = (
        # Emails are stored lower-cased and unique among live users only, so a deleted user's
        # address can sign up again; the index is also what makes bootstrap race-safe.
        Index(
            "uq_users_live_email",
            "email",
            unique=True,
            sqlite_where=text("status != 'deleted'"),
            postgresql_where=text("status != 'deleted'"),
        ),
    )

    user_id: str = Field(primary_key=True, max_length=40)
    email: str = Field(max_length=254)
    name: str = Field(max_length=200)
    role: str = Field(max_length=16, index=True)
    status: str = Field(default="active", max_length=16, index=True)
    # argon2id PHC string; never leaves the service layer.
    password_hash: str = Field(max_length=255)
    # "" (no group) or a slash path like "acme/team-a"; rows the user creates get the owner
    # path "<group_path>:<user_id>", which group-scoped roles match by prefix.
    group_path: str = Field(default="", max_length=200)
    # Access tokens issued before this instant are refused (password change, role change):
    # they are otherwise valid until they expire.
    tokens_valid_after: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class RefreshToken(SQLModel, table=True):
    """One issued refresh token. Only its SHA-256 is stored: a database leak yields no usable
    token. Tokens rotated from one login share a family, so reuse of a rotated token can
    revoke everything descended from that login."""

    __tablename__ = "refresh_tokens"

    token_id: str = Field(primary_key=True, max_length=40)
    user_id: str = Field(max_length=40, foreign_key="users.user_id", ondelete="CASCADE", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    family_id: str = Field(max_length=40, index=True)
    parent_id: str | None = Field(default=None, max_length=40)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    create_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ApiClient(Timestamps, table=True):
    """Credentials for automation (OAuth2 client_credentials). A client acts as the user who
    made it, with that user's current role; only the SHA-256 of its secret is stored."""

    __tablename__ = "api_clients"

    client_id: str = Field(primary_key=True, max_length=40)
    user_id: str = Field(max_length=40, foreign_key="users.user_id", ondelete="CASCADE", index=True)
    name: str = Field(max_length=200)
    secret_hash: str = Field(max_length=64)
    status: str = Field(default="active", max_length=16, index=True)
