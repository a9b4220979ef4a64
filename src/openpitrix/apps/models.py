"""Catalog tables: apps keyed by (repo, chart name), versions keyed by (app, version)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from openpitrix.db.base import Owned, Timestamps
from openpitrix.db.types import JSONType, UTCDateTime


class ChartMetadata(SQLModel):
    """What Chart.yaml says about a chart; an app shows its newest version's."""

    description: str = Field(default="")
    home: str = Field(default="")
    icon: str = Field(default="")
    keywords: list[str] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    maintainers: list[dict[str, Any]] = Field(
        default_factory=list, sa_type=JSONType, nullable=False
    )
    sources: list[str] = Field(default_factory=list, sa_type=JSONType, nullable=False)


# Compared byte by byte (see indexer.sync.version_sort): PostgreSQL's default collation would
# compare it by locale rules instead; SQLite compares bytes already.
VERSION_SORT_TYPE = String(400).with_variant(String(400, collation="C"), "postgresql")


class App(Owned, Timestamps, ChartMetadata, table=True):
    __tablename__ = "apps"
    __table_args__ = (
        UniqueConstraint("repo_id", "name", name="uq_apps_repo_name"),
        Index("ix_apps_owner", "owner"),
        # The default list order (create_time, then the id as tie-breaker, both descending):
        # a page is read off the index instead of sorting every app.
        Index("ix_apps_create_time", "create_time", "app_id"),
        # A repo's apps of a status in the same order (`?repo_id=..&status=..`).
        Index("ix_apps_repo_status_create_time", "repo_id", "status", "create_time", "app_id"),
    )

    app_id: str = Field(primary_key=True, max_length=40)
    repo_id: str = Field(max_length=40, foreign_key="repos.repo_id", index=True)
    name: str = Field(max_length=300)
    latest_version: str = Field(default="", max_length=100)
    latest_app_version: str = Field(default="", max_length=100)
    status: str = Field(default="active", max_length=16, index=True)


class PackageKind(StrEnum):
    """What an app version's package is: a Helm chart, or an OpenPitrix VM package."""

    HELM = "helm"
    VM = "vm"


class AppVersion(Owned, Timestamps, ChartMetadata, table=True):
    __tablename__ = "app_versions"
    __table_args__ = (UniqueConstraint("app_id", "version", name="uq_app_versions_app_version"),)

    version_id: str = Field(primary_key=True, max_length=40)
    app_id: str = Field(max_length=40, foreign_key="apps.app_id", index=True)
    repo_id: str = Field(max_length=40, index=True)
    name: str = Field(max_length=300)
    version: str = Field(max_length=100)
    # The version in semantic-version order as text, for `sort_key=version`.
    version_sort: str = Field(default="", sa_type=VERSION_SORT_TYPE)
    app_version: str = Field(default="", max_length=100)
    digest: str = Field(default="", max_length=200)
    package_url: str = Field(default="")
    created: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str = Field(default="active", max_length=16, index=True)
    package_kind: str = Field(default=PackageKind.HELM, max_length=8, index=True)
