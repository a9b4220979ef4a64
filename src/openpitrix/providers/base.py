"""The provider contract: what a runtime provider plugin implements, and how it is found.

A provider is registered by name under the `openpitrix.providers` entry point group, so a
separately installed package can add one:

    [project.entry-points."openpitrix.providers"]
    mycloud = "mycloud_openpitrix:MyCloudProvider"
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from openpitrix.jobs.plan import PlannedTask, TaskError
from openpitrix.netguard import AddressPolicy


class ProviderError(TaskError):
    """A provider's refusal, with a stable code; the job engine fails (or, when `retryable`,
    retries) the task that met it."""


class CredentialInvalid(ProviderError):
    """The credential is malformed or the provider refused it."""

    def __init__(self, message: str, *, code: str = "credential_invalid") -> None:
        super().__init__(code, message)


class EndpointRefused(ProviderError):
    """The credential's endpoint may not be used: the address guard refuses it
    (`address_not_allowed`), or it does not serve the provider's API. Never retried."""


class ZoneUnavailable(ProviderError):
    """The zone does not exist (and was not to be created) or belongs to another runtime."""


@dataclass(frozen=True)
class Credential:
    """A runtime credential as a provider sees it: decrypted, never logged."""

    provider: str
    endpoint_url: str
    content: str = field(repr=False)


# Every cluster action the API knows, in lifecycle order. A provider declares the ones it
# supports; the others answer 409 `action_unsupported` naming the provider.
CLUSTER_ACTIONS: tuple[str, ...] = (
    "create",
    "upgrade",
    "rollback",
    "update_env",
    "stop",
    "start",
    "resize",
    "add_nodes",
    "delete_nodes",
    "delete",
    "recover",
    "cease",
    "refresh",
)
# Actions that deploy a new release (a revision of version + values) and so render a package.
RELEASE_ACTIONS = frozenset({"create", "upgrade", "rollback", "update_env"})


class Produces(StrEnum):
    """What a task kind's result carries that the cluster keeps, beyond the task's own record."""

    NOTHING = ""
    # `RenderedManifest`: what the job's release deploys, kept with the release (upgrade prunes
    # against it, rollback re-applies it, later tasks of the job read it as `run.release`).
    MANIFEST = "manifest"
    # `ClusterState`: the cluster's roles and nodes as found, replacing its role and node rows.
    STATE = "state"


@dataclass(frozen=True)
class TaskKind:
    """One kind of task a provider plans and runs (its name is the task's `action`)."""

    name: str
    description: str
    produces: Produces = Produces.NOTHING


@dataclass(frozen=True)
class Capabilities:
    """What a provider supports, shown at GET /v1/providers."""

    zone_kind: str  # what a zone is called here: "namespace", "zone", "region"
    credential_format: str  # what the credential content is, for UIs
    cluster_actions: frozenset[str]
    task_kinds: tuple[TaskKind, ...] = ()
    # The kinds of app package it deploys (an app version's `package_kind`: "helm", "vm").
    package_kinds: frozenset[str] = frozenset({"helm"})
    # Whether a zone belongs to one runtime (a Kubernetes namespace), or is shared by as many
    # runtimes as users make (a cloud's region or availability zone).
    exclusive_zones: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(self.cluster_actions - set(CLUSTER_ACTIONS))
        if unknown:
            raise ValueError(f"unknown cluster actions {unknown}; known: {CLUSTER_ACTIONS}")
        names = [k.name for k in self.task_kinds]
        if len(names) != len(set(names)):
            raise ValueError(f"task kinds declared twice: {names}")

    def task_kind(self, name: str) -> TaskKind | None:
        return next((k for k in self.task_kinds if k.name == name), None)


class NodeState(BaseModel):
    """One node of a cluster as a provider found it: a VM instance, or a Kubernetes pod.
    Fields beyond these are the provider's own and are shown with the node."""

    model_config = ConfigDict(extra="allow")

    node_id: str = Field(min_length=1, max_length=253)
    role: str = Field("", max_length=253)
    instance_id: str = Field("", max_length=253)
    private_ip: str = Field("", max_length=64)
    status: str = Field("", max_length=64)


class RoleState(BaseModel):
    """One role of a cluster: a group of like nodes (a VM role, a Kubernetes workload). Fields
    beyond these are the provider's own and are shown with the role."""

    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1, max_length=253)
    status: str = Field("", max_length=64)


class ClusterState(BaseModel):
    """The result of a task kind that `Produces.STATE`, and what a provider plans from."""

    roles: list[RoleState] = Field(default_factory=list)
    nodes: list[NodeState] = Field(default_factory=list)


class RenderedManifest(BaseModel):
    """The result of a task kind that `Produces.MANIFEST`: the release's rendered form (the
    Kubernetes objects; a VM provider's roles and nodes to make), and the package version
    rendered. Other keys are shown on the task."""

    model_config = ConfigDict(extra="allow")

    objects: list[dict[str, Any]]
    chart_version: str = ""


# --- the parameters of the node actions (the API validates request bodies with these) ---------


class ResizeParams(BaseModel):
    """Resize every node of one role; at least one of cpu, memory and volume_size."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(min_length=1, max_length=253)
    cpu: int | None = Field(None, ge=1, le=448, description="vCPUs per node.")
    memory: int | None = Field(None, ge=128, le=24 * 1024 * 1024, description="MiB per node.")
    volume_size: int | None = Field(
        None, ge=1, le=64 * 1024, description="GiB of each node's data volume (grow only)."
    )

    @model_validator(mode="after")
    def _something(self) -> ResizeParams:
        if self.cpu is None and self.memory is None and self.volume_size is None:
            raise ValueError("give at least one of cpu, memory and volume_size")
        return self


class AddNodesParams(BaseModel):
    """Add `count` nodes to one role."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(min_length=1, max_length=253)
    count: int = Field(1, ge=1, le=100)


class DeleteNodesParams(BaseModel):
    """Remove these nodes (by `node_id`)."""

    model_config = ConfigDict(extra="forbid")

    node_ids: list[str] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _distinct(self) -> DeleteNodesParams:
        if len(set(self.node_ids)) != len(self.node_ids):
            raise ValueError("node_ids lists a node twice")
        return self


@dataclass(frozen=True)
class Release:
    """One revision of a cluster: what to deploy and, once rendered, its manifest."""

    revision: int
    version_id: str
    values: dict[str, Any]
    manifest: list[dict[str, Any]] | None  # None until a `Produces.MANIFEST` task has run


@dataclass(frozen=True)
class PlanRequest:
    """A cluster action to plan into task layers."""

    action: str
    params: dict[str, Any]  # the action's parameters (ResizeParams, ... as dicts); {} for most
    cluster_id: str
    zone: str
    state: ClusterState  # the cluster's roles and nodes as last found


# Reports a progress step: message, percent (or None), structured data.
Reporter = Callable[[str, int | None, dict[str, Any]], Awaitable[None]]
# Fetches the package of the app version a release deploys (a chart; a VM app package).
PackageFetcher = Callable[[], Awaitable[bytes]]
# Merges keys into the task's checkpoint, durably: committed when it returns.
Keeper = Callable[[dict[str, Any]], Awaitable[None]]


async def keep_nowhere(data: dict[str, Any]) -> None:
    """The keeper of a run outside the job engine (a test of one run): nothing is kept."""


async def watch_anywhere() -> None:
    """`TaskRun.watch_only` of a run outside the job engine: there is no slot to give back."""


@dataclass(frozen=True)
class TaskRun:
    """Everything a provider needs to run one task of a cluster job."""

    action: str  # the task kind
    params: dict[str, Any]  # the task's own parameters, as the plan gave them
    cluster_id: str
    zone: str
    credential: Credential
    release: Release | None  # the revision this job deploys (None for the other actions)
    previous: Release | None  # the revision deployed before it, if any
    history: tuple[Release, ...]  # every rendered revision of the cluster, oldest first
    state: ClusterState  # the cluster's roles and nodes as last found
    fetch_package: PackageFetcher
    report: Reporter
    timeout_seconds: float
    policy: AddressPolicy  # where the task may connect (the server's network setting)
    # What earlier runs of this task kept (a run resumed after its worker died reads what the
    # dead one recorded before it waited on the cloud), and how this run keeps more.
    checkpoint: dict[str, Any] = field(default_factory=dict)
    keep: Keeper = keep_nowhere
    # Called by a task that from then on only watches the runtime (polls readiness) and acts
    # on nothing, now or when run again: its share of the runtime's cap
    # (`worker.runtime_concurrency`) goes to the next task waiting to act there.
    watch_only: Callable[[], Awaitable[None]] = watch_anywhere


@dataclass(frozen=True)
class PreviewRequest:
    """A cluster action to preview: what the job's tasks would get, without a job."""

    action: str
    params: dict[str, Any]  # the action's parameters, as PlanRequest.params
    cluster_id: str
    zone: str
    credential: Credential
    release: Release | None  # the revision the action would deploy (deploys only)
    deployed: Release | None  # the revision deployed now, if any
    history: tuple[Release, ...]  # every rendered revision of the cluster, oldest first
    state: ClusterState  # the cluster's roles and nodes as last found
    fetch_package: PackageFetcher
    policy: AddressPolicy


class FieldChange(BaseModel):
    """One field that would change: `path` in dotted form, list items by index and keys with
    dots quoted (`spec.template.spec.containers[0].image`, `metadata.labels["app.kubernetes.io
    /version"]`); `before` is null for a field added, `after` null for a field removed."""

    path: str
    before: Any = None
    after: Any = None


class Change(BaseModel):
    """What would happen to one resource: a Kubernetes object (`apps/v1 Deployment web`), or
    for a VM provider a node or volume (`node db-1`, `volume db-1/data`)."""

    kind: Literal["create", "update", "delete", "unchanged"]
    resource: str
    diff: list[FieldChange] = Field(
        default_factory=list,
        description="For an update, the fields that would change (secret values redacted).",
    )


class Preview(BaseModel):
    """What a cluster action would do, found without doing it."""

    action: str
    changes: list[Change]
    notes: list[str] = Field(
        default_factory=list, description="What the preview could not tell, or left out."
    )


class PreviewUnsupported(ProviderError):
    """The provider cannot preview this action."""

    def __init__(self, message: str) -> None:
        super().__init__("preview_unsupported", message)


class Provider(ABC):
    """One runtime provider. One instance per process, shared by every request and task: it
    keeps no per-cluster state beyond caches (connections)."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    @abstractmethod
    def parse_credential(self, content: str, endpoint_url: str) -> Credential:
        """Check the credential's shape without calling anything; raise CredentialInvalid.
        Returns it with the endpoint the content names (a kubeconfig carries its own)."""

    @abstractmethod
    async def validate_credential(self, credential: Credential, policy: AddressPolicy) -> None:
        """Prove the credential works against the provider; raise CredentialInvalid, or
        ProviderError with a reason (an endpoint that is not the provider's API, unreachable).

        Every method that connects takes the `policy` and connects only through it
        (`netguard.guarded_transport` / `guarded_session`): endpoints are user input, and a
        refused one fails with ProviderError("address_not_allowed")."""

    @abstractmethod
    async def describe_zones(self, credential: Credential, policy: AddressPolicy) -> list[str]:
        """The zones this credential may deploy into."""

    @abstractmethod
    async def claim_zone(
        self,
        credential: Credential,
        zone: str,
        *,
        runtime_id: str,
        create: bool,
        policy: AddressPolicy,
    ) -> None:
        """Mark the zone as the runtime's (creating it if asked); raise ZoneUnavailable if it is
        missing or another runtime's. Idempotent for the same runtime."""

    @abstractmethod
    async def release_zone(
        self, credential: Credential, zone: str, *, runtime_id: str, policy: AddressPolicy
    ) -> None:
        """Drop the runtime's mark (the zone itself stays). Idempotent."""

    @abstractmethod
    def plan(self, request: PlanRequest) -> list[list[PlannedTask]]:
        """The layers of tasks of a cluster action, each task of a kind the provider declares
        in `capabilities.task_kinds`; tasks of one layer may run in parallel, layers run in
        order. Called only for actions in `capabilities.cluster_actions`. Raise ProviderError
        for parameters the cluster cannot take (a role it does not have)."""

    @abstractmethod
    async def run_task(self, run: TaskRun) -> dict[str, Any]:
        """Run one task, idempotently: a redelivered task runs again from the start and must
        converge on the same outcome (a create names what it makes after the cluster, role and
        node, so a second run finds it instead of making another). Report progress through
        `run.report`. Returns the task's result; a task kind that `Produces.MANIFEST` returns
        a `RenderedManifest`, one that `Produces.STATE` a `ClusterState` (as dicts). Raises
        ProviderError (with `retryable` for transient trouble)."""

    async def check_resources(self, run: TaskRun) -> dict[str, Any]:
        """Whether the zone has room for the job's release (quotas, capacity), before anything
        is made; raise ProviderError("insufficient_resources") naming what is short. A
        provider's plan runs it as a task of its own. By default nothing is checked."""
        return {}

    @abstractmethod
    async def describe_cluster(
        self, credential: Credential, zone: str, cluster_id: str, policy: AddressPolicy
    ) -> dict[str, Any]:
        """The cluster as it is now, a `ClusterState` (as a dict) rebuilt from reality."""

    async def preview(self, request: PreviewRequest) -> Preview:
        """What `request.action` would create, change and delete, found without changing
        anything (a Kubernetes server-side-apply dry run; a VM provider's planned nodes and
        volumes). Raise ProviderError as the action's tasks would (a chart that does not
        render, a quota too small); a provider that cannot tell raises PreviewUnsupported."""
        raise PreviewUnsupported(f"{self.name} clusters cannot preview {request.action}")

    def redact_manifest(self, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A release's manifest as the API may show it: hide what is secret in it (Kubernetes
        Secrets' values). By default shown as rendered."""
        return objects

    # Whether `redact_values` changes anything: the API reads a cluster's manifest to show
    # its values only for such providers.
    redacts_values: ClassVar[bool] = False

    def redact_values(
        self, values: dict[str, Any], objects: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """A revision's values as the API may show them, given its manifest as stored ([]
        until rendered): a VM package's `password` settings hidden. By default as given."""
        return values

    async def close(self) -> None:  # noqa: B027  optional hook, nothing to do by default
        """Release what the provider keeps between tasks (pooled connections); called when
        a worker stops."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "zone_kind": self.capabilities.zone_kind,
            "credential_format": self.capabilities.credential_format,
            "cluster_actions": [
                a for a in CLUSTER_ACTIONS if a in self.capabilities.cluster_actions
            ],
            "task_kinds": [
                {"name": k.name, "description": k.description, "produces": k.produces.value}
                for k in self.capabilities.task_kinds
            ],
            "package_kinds": sorted(self.capabilities.package_kinds),
            "exclusive_zones": self.capabilities.exclusive_zones,
        }
