"""Repo tables: the repo row and its ordered labels and selectors."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, text
from sqlmodel import Field, SQLModel

from openpitrix.db.base import Owned, Timestamps
from openpitrix.db.types import JSONType, UTCDateTime


class Repo(Owned, Timestamps, table=True):
    __tablename__ = "repos"
    __table_args__ = (
        # Names are unique among one owner's live repos: a deleted repo's name can be reused,
        # and another tenant's names neither collide nor leak.
        Index(
            "uq_repos_live_owner_name",
            "owner",
            "name",
            unique=True,
            sqlite_where=text("status != 'deleted'"),
            postgresql_where=text("status != 'deleted'"),
        ),
        Index("ix_repos_next_index_time", "next_index_time"),
        Index("ix_repos_owner_path", "owner_path"),
    )

    repo_id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)
    type: str = Field(max_length=16)
    url: str = Field(max_length=2000)
    providers: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    labels: list[dict[str, str]] = Field(
        default_factory=list, sa_column=Column(JSONType, nullable=False)
    )
    selectors: list[dict[str, str]] = Field(
        default_factory=list, sa_column=Column(JSONType, nullable=False)
    )
    visibility: str = Field(default="private", max_length=16)
    app_default_status: str = Field(default="active", max_length=16)
    # Issue 3 encrypts this column; the API never returns it, only whether it is set.
    credential_secret: str | None = Field(default=None, sa_type=Text)
    status: str = Field(default="active", max_length=16, index=True)
    index_interval_seconds: int | None = Field(default=None)
    # Indexing state: the running job (at most one), conditional-GET validators, last outcome.
    index_job_id: str | None = Field(default=None, max_length=40)
    # Live catalog size after the last sync: a 304 re-index reports it without counting rows.
    app_count: int = Field(default=0)
    version_count: int = Field(default=0)
    next_index_time: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    last_index_time: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    last_index_status: str | None = Field(default=None, max_length=16)
    last_index_error: str | None = Field(default=None, max_length=2000)
    index_etag: str | None = Field(default=None, max_length=500)
    index_last_modified: str | None = Field(default=None, max_length=100)


class RepoLabel(SQLModel, table=True):
    """One key/value of a repo's labels or selectors, kept in a side table so filters are SQL."""

    __tablename__ = "repo_labels"
    __table_args__ = (Index("ix_repo_labels_lookup", "kind", "key", "value"),)

    repo_id: str = Field(
        primary_key=True, max_length=40, foreign_key="repos.repo_id", ondelete="CASCADE"
    )
    kind: str = Field(primary_key=True, max_length=10)  # "label" | "selector"
    position: int = Field(primary_key=True)
    key: str = Field(max_length=200)
    value: str = Field(max_length=500)
