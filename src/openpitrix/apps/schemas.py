"""Catalog API shapes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AppStatus(StrEnum):
    """Status of an app or an app version (a repo's `app_default_status`, or deleted)."""

    ACTIVE = "active"
    DRAFT = "draft"
    DELETED = "deleted"


class AppRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    app_id: str
    repo_id: str
    name: str
    description: str
    home: str
    icon: str
    keywords: list[str]
    maintainers: list[dict[str, Any]]
    sources: list[str]
    latest_version: str = Field(description="Newest chart version in the repo.")
    latest_app_version: str
    status: str
    owner: str
    create_time: datetime
    update_time: datetime
    status_time: datetime


class AppPage(BaseModel):
    total_count: int
    items: list[AppRead]


class AppVersionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version_id: str
    app_id: str
    repo_id: str
    name: str
    version: str
    app_version: str
    description: str
    home: str
    icon: str
    keywords: list[str]
    maintainers: list[dict[str, Any]]
    sources: list[str]
    digest: str
    package_url: str
    created: datetime | None = Field(description="When the chart version was packaged.")
    status: str
    owner: str
    create_time: datetime
    update_time: datetime
    status_time: datetime


class AppVersionPage(BaseModel):
    total_count: int
    items: list[AppVersionRead]
