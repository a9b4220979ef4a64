"""Catalog API shapes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from openpitrix.apps.models import PackageKind
from openpitrix.providers.vm.package import ClusterSpec


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
    package_kind: PackageKind = Field(
        description="`helm` for a Helm chart, `vm` for an OpenPitrix VM package (see the README's "
        "VM app packages section for how the indexer tells them apart)."
    )
    status: str
    owner: str
    create_time: datetime
    update_time: datetime
    status_time: datetime


class AppVersionPage(BaseModel):
    total_count: int
    items: list[AppVersionRead]


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conf: dict[str, Any] = Field(
        default_factory=dict,
        description="The settings, shaped like the package's config.json "
        '(`{"cluster": {...}, "env": {...}}`); what is left out takes its default.',
    )


class RenderedCluster(BaseModel):
    version_id: str
    package_kind: PackageKind
    conf: dict[str, Any] = Field(
        description="The settings after checking, with the defaults filled in."
    )
    cluster: ClusterSpec = Field(description="The cluster spec a deploy with `conf` creates.")
