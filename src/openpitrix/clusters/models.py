"""Cluster tables: the cluster row (state and lock), its release history, and its roles and
nodes as the provider last found them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Text
from sqlmodel import Field, SQLModel

from openpitrix.db.base import Owned, Timestamps
from openpitrix.db.types import JSONType, UTCDateTime, utcnow


class Cluster(Owned, Timestamps, table=True):
    __tablename__ = "clusters"
    __table_args__ = (
        Index("ix_clusters_owner", "owner"),
        Index("ix_clusters_runtime", "runtime_id"),
        Index("ix_clusters_app", "app_id"),
    )

    cluster_id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=100)
    description: str = Field(default="", max_length=2000)
    app_id: str = Field(max_length=40)
    version_id: str = Field(max_length=40, index=True)
    runtime_id: str = Field(max_length=40)
    provider: str = Field(max_length=30)
    zone: str = Field(max_length=253)
    # pending (never deployed), active, stopped, deleted, ceased.
    status: str = Field(default="pending", max_length=16, index=True)
    # The lock: "" when idle, else the operation under way (creating, upgrading, ...). Taken
    # by a guarded UPDATE when a job starts, released when the job ends, whatever the end.
    transition_status: str = Field(default="", max_length=16)
    values: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    revision: int = Field(default=0, description="The release revision deployed now.")
    job_id: str | None = Field(default=None, max_length=40)


class ClusterRelease(SQLModel, table=True):
    """One revision of a cluster: the chart version, the values and the rendered manifest,
    so upgrade can prune what left it and rollback can re-apply it."""

    __tablename__ = "cluster_releases"

    cluster_id: str = Field(
        primary_key=True, max_length=40, foreign_key="clusters.cluster_id", ondelete="CASCADE"
    )
    revision: int = Field(primary_key=True)
    version_id: str = Field(max_length=40)
    chart_version: str = Field(default="", max_length=100)
    values: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    # reset, reused or restored (clusters.schemas.ValuesMode): how `values` were made.
    values_mode: str = Field(default="reset", max_length=16)
    manifest: str = Field(default="[]", sa_type=Text)  # JSON list of the objects applied
    # pending (rendered, not yet applied), deployed, superseded, failed.
    status: str = Field(default="pending", max_length=16)
    job_id: str | None = Field(default=None, max_length=40)
    create_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ClusterRole(SQLModel, table=True):
    """One role of a cluster as its provider last found it (a VM role, a Kubernetes
    workload); `detail` holds the provider's own fields."""

    __tablename__ = "cluster_roles"

    cluster_id: str = Field(
        primary_key=True, max_length=40, foreign_key="clusters.cluster_id", ondelete="CASCADE"
    )
    role: str = Field(primary_key=True, max_length=253)
    position: int = Field(default=0)  # the provider's order
    status: str = Field(default="", max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    update_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ClusterNode(SQLModel, table=True):
    """One node of a cluster as its provider last found it (a VM instance, a Kubernetes pod);
    `detail` holds the provider's own fields."""

    __tablename__ = "cluster_nodes"

    cluster_id: str = Field(
        primary_key=True, max_length=40, foreign_key="clusters.cluster_id", ondelete="CASCADE"
    )
    node_id: str = Field(primary_key=True, max_length=253)
    position: int = Field(default=0)  # the provider's order
    role: str = Field(default="", max_length=253)
    instance_id: str = Field(default="", max_length=253)
    private_ip: str = Field(default="", max_length=64)
    status: str = Field(default="", max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    update_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
