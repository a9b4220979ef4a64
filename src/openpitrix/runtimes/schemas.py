"""Runtime and runtime credential API shapes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, model_validator

from openpitrix.jobs.schemas import ErrorInfo
from openpitrix.repos.schemas import Description, KeyValue, no_duplicate_pairs


class RuntimeStatus(StrEnum):
    ACTIVE = "active"
    DELETED = "deleted"


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ProviderField = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z][a-z0-9-]{0,29}$")
]
# DNS-1123 label (a Kubernetes namespace) or a cloud zone/region name.
Zone = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"),
]
EndpointUrl = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=2000, pattern=r"^https?://\S+$")
]
Content = Annotated[SecretStr, Field(min_length=1, max_length=256 * 1024)]

KUBECONFIG_EXAMPLE = "apiVersion: v1\nkind: Config\ncurrent-context: prod\n..."


class CredentialCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "prod cluster", "provider": "kubernetes", "content": KUBECONFIG_EXAMPLE}
            ]
        },
    )

    name: Name
    description: Description = ""
    provider: ProviderField
    endpoint_url: EndpointUrl | None = Field(
        None, description="The provider's API endpoint; for kubernetes, the kubeconfig's server."
    )
    content: Content = Field(
        description="The secret itself (a kubeconfig for kubernetes). Write-only: stored "
        "encrypted, never returned."
    )


class CredentialUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    content: Content | None = Field(
        None, description="Replace the secret (checked against the provider first)."
    )


class CredentialValidate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: ProviderField
    endpoint_url: EndpointUrl | None = None
    content: Content


class CredentialRead(BaseModel):
    credential_id: str
    name: str
    description: str
    provider: str
    endpoint_url: str
    content_set: bool = Field(True, description="The secret is stored (it is never returned).")
    status: RuntimeStatus
    owner: str
    create_time: datetime
    update_time: datetime
    status_time: datetime


class CredentialPage(BaseModel):
    total_count: int
    items: list[CredentialRead]


class CredentialValidation(BaseModel):
    ok: bool
    endpoint_url: str | None = None
    error: ErrorInfo | None = None


class Zones(BaseModel):
    zone_kind: str = Field(description="What a zone is for this provider (namespace, zone...).")
    zones: list[str]


class RuntimeCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "prod-web",
                    "credential_id": "rc-abc",
                    "zone": "web",
                    "create_zone": True,
                    "labels": [{"key": "env", "value": "prod"}],
                }
            ]
        },
    )

    name: Name
    description: Description = ""
    credential_id: str = Field(max_length=40)
    zone: Zone = Field(description="Where apps land: a namespace for kubernetes.")
    create_zone: bool = Field(False, description="Create the namespace if it does not exist.")
    labels: list[KeyValue] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _check(self) -> Self:
        no_duplicate_pairs(self.labels, "labels")
        return self


class RuntimeUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    labels: list[KeyValue] | None = Field(None, max_length=50)

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name in ("name", "description", "labels"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        no_duplicate_pairs(self.labels, "labels")
        return self


class RuntimeRead(BaseModel):
    runtime_id: str
    name: str
    description: str
    provider: str
    zone: str
    credential_id: str
    endpoint_url: str
    labels: list[KeyValue]
    status: RuntimeStatus
    owner: str
    create_time: datetime
    update_time: datetime
    status_time: datetime


class RuntimePage(BaseModel):
    total_count: int
    items: list[RuntimeRead]


class RuntimeDeleted(BaseModel):
    runtime_id: str
    status: RuntimeStatus
    cluster_job_ids: list[str] = Field(
        default_factory=list, description="Delete jobs started for its clusters (force)."
    )


class TaskKindRead(BaseModel):
    name: str
    description: str
    produces: str = Field(
        description="What its result carries for the cluster: `manifest` (the release's "
        "rendered form), `state` (its roles and nodes), or empty."
    )


class ProviderRead(BaseModel):
    name: str
    zone_kind: str
    credential_format: str
    cluster_actions: list[str] = Field(
        description="The cluster actions this provider supports; others answer 409 "
        "`action_unsupported`."
    )
    task_kinds: list[TaskKindRead] = Field(description="The kinds of task its jobs run.")
    exclusive_zones: bool = Field(
        description="Whether a zone belongs to one runtime (a namespace; a second runtime on "
        "it is a 409 `zone_taken`) or is shared by any number of runtimes (a cloud region)."
    )
    package_kinds: list[str] = Field(
        description="The kinds of app package it deploys (`helm`, `vm`): an app version of "
        "another kind is refused with 409 `package_kind_unsupported`."
    )


class ProviderList(BaseModel):
    items: list[ProviderRead]
