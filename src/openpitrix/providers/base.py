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
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

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


@dataclass(frozen=True)
class Capabilities:
    """What a provider supports, shown at GET /v1/providers."""

    zone_kind: str  # what a zone is called here: "namespace", "zone", "region"
    credential_format: str  # what the credential content is, for UIs
    cluster_actions: frozenset[str]


@dataclass(frozen=True)
class Release:
    """One revision of a cluster: what to deploy and, once rendered, the objects."""

    revision: int
    version_id: str
    values: dict[str, Any]
    objects: list[dict[str, Any]] | None  # None until the render task has run


# Reports a progress step: message, percent (or None), structured data.
Reporter = Callable[[str, int | None, dict[str, Any]], Awaitable[None]]
ChartFetcher = Callable[[], Awaitable[bytes]]


@dataclass(frozen=True)
class TaskRun:
    """Everything a provider needs to run one task of a cluster job."""

    action: str
    params: dict[str, Any]
    cluster_id: str
    zone: str
    credential: Credential
    release: Release | None  # the revision this job deploys (None for delete and cease)
    previous: Release | None  # the revision deployed before it, if any
    known_kinds: list[tuple[str, str]]  # (apiVersion, kind) the cluster ever had
    fetch_chart: ChartFetcher
    report: Reporter
    timeout_seconds: float
    policy: AddressPolicy  # where the task may connect (the server's network setting)


@dataclass(frozen=True)
class PreviewRequest:
    """A cluster action to preview: what the job's tasks would get, without a job."""

    action: str
    cluster_id: str
    zone: str
    credential: Credential
    release: Release | None  # the revision the action would deploy (None for delete, cease)
    deployed: Release | None  # the revision deployed now, if any
    known_kinds: list[tuple[str, str]]  # (apiVersion, kind) the cluster ever had
    fetch_chart: ChartFetcher
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
    def plan(self, action: str) -> list[list[PlannedTask]]:
        """The task layers of a cluster action (create, upgrade, rollback, update_env,
        delete, cease). Raise ProviderError for an action the provider does not support."""

    @abstractmethod
    async def run_task(self, run: TaskRun) -> dict[str, Any]:
        """Run one task, idempotently: a redelivered task runs again from the start and must
        converge on the same outcome. Returns the task's result; a render task returns
        `{"objects": [...], ...}` which becomes the release's manifest. Raises ProviderError
        (with `retryable` for transient trouble)."""

    @abstractmethod
    async def check_resources(self, run: TaskRun) -> dict[str, Any]:
        """Whether the zone has room for the job's release (quotas, capacity), before anything
        is made; raise ProviderError("insufficient_resources") with what is short. Plans run it
        as a task of its own ("check")."""

    @abstractmethod
    async def describe_cluster(
        self, credential: Credential, zone: str, cluster_id: str, policy: AddressPolicy
    ) -> dict[str, Any]:
        """The cluster as it is now: `{"roles": [...], "nodes": [...]}` rebuilt from reality."""

    async def preview(self, request: PreviewRequest) -> Preview:
        """What `request.action` would create, change and delete, found without changing
        anything (a Kubernetes server-side-apply dry run; a VM provider's planned nodes and
        volumes). Raise ProviderError as the action's tasks would (a chart that does not
        render, a quota too small); a provider that cannot tell raises PreviewUnsupported."""
        raise PreviewUnsupported(f"{self.name} clusters cannot preview {request.action}")

    async def close(self) -> None:  # noqa: B027  optional hook, nothing to do by default
        """Release what the provider keeps between tasks (pooled connections); called when
        a worker stops."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "zone_kind": self.capabilities.zone_kind,
            "credential_format": self.capabilities.credential_format,
            "cluster_actions": sorted(self.capabilities.cluster_actions),
        }
