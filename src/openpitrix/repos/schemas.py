"""Repo API shapes and their validation rules."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, model_validator

from openpitrix.jobs.schemas import ErrorInfo


class RepoType(StrEnum):
    HTTP = "http"
    HTTPS = "https"


class Visibility(StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"


class AppDefaultStatus(StrEnum):
    ACTIVE = "active"
    DRAFT = "draft"


# A provider's name; whether it is installed is checked by the service (providers are
# plugins, so the names are not known here).
ProviderName = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z][a-z0-9-]{0,29}$")
]


class RepoStatus(StrEnum):
    ACTIVE = "active"
    DELETED = "deleted"


LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$")

LabelKey = Annotated[str, StringConstraints(strip_whitespace=True, pattern=LABEL_KEY_RE.pattern)]
LabelValue = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
RepoName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Description = Annotated[str, StringConstraints(max_length=2000)]


class KeyValue(BaseModel):
    """One label or selector entry. Lists keep their order; a key may repeat (values of one
    selector key are alternatives)."""

    model_config = ConfigDict(extra="forbid")

    key: LabelKey
    value: LabelValue


def no_duplicate_pairs(items: list[KeyValue] | None, field: str) -> None:
    if items is None:
        return
    seen: set[tuple[str, str]] = set()
    for item in items:
        pair = (item.key, item.value)
        if pair in seen:
            raise ValueError(f"{field} has {item.key}={item.value} twice")
        seen.add(pair)


class RepoCredential(BaseModel):
    """HTTP basic auth (`username` + `password`) or a bearer `token`. Write-only."""

    model_config = ConfigDict(extra="forbid")

    username: str | None = Field(None, max_length=200)
    password: SecretStr | None = Field(None, max_length=500)
    token: SecretStr | None = Field(None, max_length=4000)

    @model_validator(mode="after")
    def _one_scheme(self) -> Self:
        basic = self.username is not None or self.password is not None
        if basic and self.token is not None:
            raise ValueError("give either username/password or token, not both")
        if basic and not (self.username and self.password):
            raise ValueError("basic auth needs both username and password")
        if not basic and self.token is None:
            raise ValueError("give username/password or token")
        return self

    def to_storage(self) -> dict[str, str]:
        if self.token is not None:
            return {"token": self.token.get_secret_value()}
        assert self.username is not None
        assert self.password is not None
        return {"username": self.username, "password": self.password.get_secret_value()}


def _check_url(url: str, repo_type: RepoType | None) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("url must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError("put credentials in `credential`, not in the url")
    if repo_type is not None and parts.scheme != repo_type.value:
        raise ValueError(f"url scheme {parts.scheme!r} does not match type {repo_type.value!r}")


Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=2000)]


class RepoCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "bitnami",
                    "type": "https",
                    "url": "https://charts.example.org/bitnami",
                    "providers": ["kubernetes"],
                    "labels": [{"key": "category", "value": "database"}],
                    "selectors": [{"key": "env", "value": "prod"}],
                    "visibility": "public",
                    "description": "Bitnami charts",
                    "app_default_status": "active",
                }
            ]
        },
    )

    name: RepoName
    type: RepoType
    url: Url
    providers: list[ProviderName] = Field(min_length=1)
    labels: list[KeyValue] = Field(default_factory=list, max_length=50)
    selectors: list[KeyValue] = Field(default_factory=list, max_length=50)
    # Private unless asked: a repo added with credentials must not show its apps to everyone.
    visibility: Visibility = Visibility.PRIVATE
    description: Description = ""
    app_default_status: AppDefaultStatus = AppDefaultStatus.ACTIVE
    credential: RepoCredential | None = None
    index_interval_seconds: int | None = Field(
        None,
        ge=1,
        le=30 * 24 * 3600,
        description="Periodic re-index interval; default from settings.",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        _check_url(self.url, self.type)
        if len(set(self.providers)) != len(self.providers):
            raise ValueError("providers has duplicates")
        no_duplicate_pairs(self.labels, "labels")
        no_duplicate_pairs(self.selectors, "selectors")
        return self


class RepoUpdate(BaseModel):
    """Fields present in the body are changed; `credential: null` removes the credential."""

    model_config = ConfigDict(extra="forbid")

    name: RepoName | None = None
    type: RepoType | None = None
    url: Url | None = None
    providers: list[ProviderName] | None = Field(None, min_length=1)
    labels: list[KeyValue] | None = Field(None, max_length=50)
    selectors: list[KeyValue] | None = Field(None, max_length=50)
    visibility: Visibility | None = None
    description: Description | None = None
    app_default_status: AppDefaultStatus | None = None
    credential: RepoCredential | None = None
    index_interval_seconds: int | None = Field(None, ge=1, le=30 * 24 * 3600)

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name in ("name", "type", "url", "providers", "visibility", "app_default_status"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        if self.url is not None:
            _check_url(self.url, None)
        if self.providers is not None and len(set(self.providers)) != len(self.providers):
            raise ValueError("providers has duplicates")
        no_duplicate_pairs(self.labels, "labels")
        no_duplicate_pairs(self.selectors, "selectors")
        return self


class RepoRead(BaseModel):
    repo_id: str
    name: str
    description: str
    type: RepoType
    url: str
    providers: list[str]
    labels: list[KeyValue]
    selectors: list[KeyValue]
    visibility: Visibility
    app_default_status: AppDefaultStatus
    credential_set: bool = Field(description="A credential is stored (it is never returned).")
    status: RepoStatus
    owner: str
    index_interval_seconds: int | None
    index_job_id: str | None = Field(description="The index job running now, if any.")
    app_count: int = Field(description="Apps in the catalog from this repo (not deleted).")
    version_count: int = Field(description="Their versions (not deleted).")
    last_index_time: datetime | None
    last_index_status: str | None
    last_index_error: str | None
    next_index_time: datetime | None
    create_time: datetime
    update_time: datetime
    status_time: datetime


class RepoPage(BaseModel):
    total_count: int
    items: list[RepoRead]


class RepoCreated(RepoRead):
    index_job_id: str | None = Field(description="The index job started for the new repo.")


class RepoJobAccepted(RepoRead):
    job_id: str = Field(
        description="The job doing the work; follow it at /v1/jobs/{job_id}/events."
    )


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: bool = Field(
        False,
        description="Re-fetch even if unchanged and accept an empty or much smaller index.",
    )


class RepoValidate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: RepoType
    url: Url
    credential: RepoCredential | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _check_url(self.url, self.type)
        return self


class RepoValidation(BaseModel):
    ok: bool
    error: ErrorInfo | None = None
    chart_count: int = 0
    version_count: int = 0


def parse_label_filter(raw: list[str] | None, name: str) -> dict[str, list[str]]:
    """`?label=env=prod&label=env=dev&label=tier=web` -> {"env": ["prod", "dev"],
    "tier": ["web"]}."""
    result: dict[str, list[str]] = {}
    for item in raw or []:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ValueError(f"{name} filter {item!r} must look like key=value")
        result.setdefault(key, []).append(value)
    return result
