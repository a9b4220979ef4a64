"""Cluster API shapes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from openpitrix.providers.base import (
    AddNodesParams,
    DeleteNodesParams,
    NodeState,
    ResizeParams,
    RoleState,
)
from openpitrix.repos.schemas import Description
from openpitrix.runtimes.schemas import Name

MAX_VALUES_BYTES = 256 * 1024
MAX_REVISION = 2**31 - 1


class ClusterStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    STOPPED = "stopped"
    DELETED = "deleted"
    CEASED = "ceased"


class Transition(StrEnum):
    NONE = ""
    CREATING = "creating"
    UPGRADING = "upgrading"
    ROLLING_BACK = "rolling-back"
    UPDATING = "updating"
    STOPPING = "stopping"
    STARTING = "starting"
    RESIZING = "resizing"
    ADDING_NODES = "adding-nodes"
    DELETING_NODES = "deleting-nodes"
    DELETING = "deleting"
    RECOVERING = "recovering"
    CEASING = "ceasing"
    REFRESHING = "refreshing"


def _storable(values: dict[str, Any]) -> dict[str, Any]:
    # Values are stored, hashed for idempotency and rendered as JSON: refuse at the door what
    # JSON encoders cannot write (integers past 64 bits, unpaired surrogates) instead of failing
    # later with a 500.
    try:
        orjson.dumps(values)
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"values cannot be stored as JSON: {exc}") from None
    return values


Values = Annotated[dict[str, Any], AfterValidator(_storable)]


DRY_RUN_DESCRIPTION = (
    "Answer 200 with what the action would do (objects to create, change with a field-level "
    "diff, and delete) instead of doing it: no job, no lock, nothing written."
)


def dry_run_field() -> Any:
    return Field(False, description=DRY_RUN_DESCRIPTION)


class ValuesMode(StrEnum):
    """How a revision's values were made."""

    RESET = "reset"  # the values given, over the chart's defaults only
    REUSED = "reused"  # the values given, merged over those of the revision deployed before
    RESTORED = "restored"  # a rollback: an earlier revision's values, as they were


class ClusterCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "version_id": "appv-abc",
                    "runtime_id": "runtime-abc",
                    "name": "shop",
                    "values": {"replicaCount": 2},
                }
            ]
        },
    )

    version_id: str = Field(max_length=40)
    runtime_id: str = Field(max_length=40)
    name: Name
    description: Description = ""
    values: Values = Field(
        default_factory=dict, description="Merged over the chart's default values."
    )
    dry_run: bool = dry_run_field()


class ClusterUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None


class UpgradeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version_id: str = Field(max_length=40, description="Another version of the same app.")
    values: Values | None = Field(None, description="New values; default: keep the current.")
    dry_run: bool = dry_run_field()


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Bounded like the column it is looked up in (INTEGER): a larger number is a 422, not a
    # database overflow.
    revision: int | None = Field(
        None,
        ge=1,
        le=MAX_REVISION,
        description="The revision to return to; default: the one before.",
    )
    dry_run: bool = dry_run_field()


class UpdateEnvRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"values": {"replicaCount": 3}}]},
    )

    values: Values = Field(
        description="Merged over the deployed revision's values (like Helm's `--reuse-values`): "
        "nested tables merge, and a `null` drops an earlier override of that key, so the chart's "
        "default applies again. With `reset_values`, they replace them instead."
    )
    reset_values: bool = Field(
        False,
        description="Start from the chart's defaults: earlier overrides are dropped and only "
        "`values` apply (like Helm's `--reset-values`).",
    )
    dry_run: bool = dry_run_field()


class ActionOptions(BaseModel):
    """The body of an action that takes no parameters (stop, start, recover, cease); it may be
    left out."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"dry_run": True}]})

    dry_run: bool = dry_run_field()


class ResizeRequest(ResizeParams):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"role": "db", "cpu": 4, "memory": 8192}]}
    )

    dry_run: bool = dry_run_field()


class AddNodesRequest(AddNodesParams):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"role": "web", "count": 2}]}
    )

    dry_run: bool = dry_run_field()


class DeleteNodesRequest(DeleteNodesParams):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"node_ids": ["web-3"]}]}
    )

    dry_run: bool = dry_run_field()


class ClusterRead(BaseModel):
    cluster_id: str
    name: str
    description: str
    app_id: str
    version_id: str
    runtime_id: str
    provider: str
    zone: str
    status: ClusterStatus
    transition_status: str = Field(description="The operation under way, or empty.")
    values: Values
    revision: int
    job_id: str | None
    owner: str
    roles: list[RoleState] = Field(
        default_factory=list, description="Its roles as last found (VM roles; workloads)."
    )
    nodes: list[NodeState] = Field(
        default_factory=list, description="Its nodes as last found (VM instances; pods)."
    )
    create_time: datetime
    update_time: datetime
    status_time: datetime


class ClusterPage(BaseModel):
    total_count: int
    items: list[ClusterRead]


class ClusterJobAccepted(BaseModel):
    cluster_id: str
    job_id: str


class NodePage(BaseModel):
    total_count: int
    items: list[NodeState]


class ReleaseRead(BaseModel):
    """One revision of a cluster."""

    revision: int
    version_id: str
    chart_version: str
    values: Values
    values_mode: ValuesMode = Field(
        description="`reset`: the values given, over the chart's defaults; `reused`: the values "
        "given merged over the previous revision's (update-env's default, upgrade without "
        "values); `restored`: a rollback's earlier values."
    )
    status: str = Field(
        description="pending (not rendered yet), rendered, deployed, superseded, or failed."
    )
    job_id: str | None = Field(description="The job that made this revision.")
    create_time: datetime


class ReleaseDetail(ReleaseRead):
    manifest: list[dict[str, Any]] = Field(
        description="The objects this revision applied, as rendered; Secret values redacted."
    )


class ReleasePage(BaseModel):
    total_count: int
    items: list[ReleaseRead]
