"""Identity API shapes: users, password change, and the OAuth2 token answer."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, model_validator

from openpitrix.iam.passwords import MAX_LENGTH, MIN_LENGTH


class Role(StrEnum):
    ADMIN = "admin"
    ISV = "isv"
    DEVELOPER = "developer"
    USER = "user"


class UserStatus(StrEnum):
    ACTIVE = "active"
    DELETED = "deleted"


# Deliberately loose: deliverability is the mail system's business, and `admin@localhost`
# (the bootstrap default) must pass. Stored lower-cased so uniqueness ignores case.
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$"
    ),
]
GroupPath = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        max_length=200,
        pattern=r"^([A-Za-z0-9][A-Za-z0-9-]*(/[A-Za-z0-9][A-Za-z0-9-]*)*)?$",
    ),
]
GROUP_DESCRIPTION = (
    "Slash path of the user's group (`acme`, `acme/team-a`), or empty for none. Group-scoped "
    "roles (isv) see the rows of their group and its sub-groups."
)
UserName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Password = Annotated[SecretStr, Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)]


class UserCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "dev@example.org",
                    "name": "Dev One",
                    "role": "developer",
                    "password": "correct horse battery",
                }
            ]
        },
    )

    email: Email
    name: UserName
    role: Role = Role.USER
    group_path: GroupPath = Field("", description=GROUP_DESCRIPTION)
    password: Password = Field(description=f"{MIN_LENGTH} to {MAX_LENGTH} characters.")


class UserUpdate(BaseModel):
    """Fields present in the body are changed. The last active admin cannot be demoted or
    deleted."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "Dev Two", "role": "isv"}]}
    )

    name: UserName | None = None
    role: Role | None = None
    status: UserStatus | None = None
    group_path: GroupPath | None = Field(
        None, description=GROUP_DESCRIPTION + " Rows made before a move keep their owner path."
    )

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        for name in ("name", "role", "status", "group_path"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class UserRead(BaseModel):
    user_id: str
    email: str
    name: str
    role: Role
    status: UserStatus
    group_path: str
    create_time: datetime
    update_time: datetime
    status_time: datetime


class UserPage(BaseModel):
    total_count: int
    items: list[UserRead]


class PasswordChange(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"old_password": "correct horse battery", "new_password": "n3w-s3cret!"}]
        },
    )

    old_password: SecretStr = Field(min_length=1, max_length=MAX_LENGTH)
    new_password: Password = Field(description=f"{MIN_LENGTH} to {MAX_LENGTH} characters.")


class TokenResponse(BaseModel):
    """RFC 6749 §5.1 access token response."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str | None = Field(
        None,
        description="Spend it at this endpoint with grant_type=refresh_token. Absent for "
        "client_credentials (RFC 6749 §4.4.3): a client simply asks again.",
    )


class OAuthErrorBody(BaseModel):
    """RFC 6749 §5.2 error response (not the API's usual error shape: OAuth2 clients expect
    this one)."""

    error: Literal[
        "invalid_request",
        "invalid_grant",
        "unsupported_grant_type",
        "invalid_client",
        "slow_down",
    ]
    error_description: str


class ApiClientStatus(StrEnum):
    ACTIVE = "active"
    DELETED = "deleted"


class ApiClientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "ci"}]})

    name: UserName


class ApiClientRead(BaseModel):
    client_id: str
    user_id: str = Field(description="The user the client acts as, with that user's role.")
    name: str
    status: ApiClientStatus
    create_time: datetime
    status_time: datetime


class ApiClientCreated(ApiClientRead):
    client_secret: str = Field(
        description="Shown only in this answer; only its hash is stored. Use it with "
        "grant_type=client_credentials."
    )


class ApiClientPage(BaseModel):
    total_count: int
    items: list[ApiClientRead]
