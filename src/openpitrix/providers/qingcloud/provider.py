"""The qingcloud provider: VM app clusters on QingCloud IaaS, on the shared VM provider.

A credential is a JSON or YAML mapping `{access_key_id, secret_access_key, zone?,
image_id?, login_keypair?}`; the
runtime credential's endpoint URL is the API endpoint (QingCloud's public one when empty; a
private QingCloud or a test server otherwise, always through the address guard).

Zones are QingCloud's (pek3a, sh1a, ...): they cannot be made, and carry no mark a runtime
could set (QingCloud tags attach to resources, not to zones). So claiming a zone checks that
the account may deploy there and records nothing on the cloud; the runtimes table keeps the
claim, and clusters keep apart by the names of what they make (see `qingcloud.vm`).

Nodes boot the role's image when the package names one (`container.image` of a non-docker
container), else the credential's `image_id`, else CentOS 7 (`centos7x64d`); they join the
spec's `subnet` vxnet, else `vxnet-0`; they log in by the credential's `login_keypair`, else
by a random password nobody keeps. A role's env and its init and start service commands run
once at first boot as QingCloud user data; nothing runs later (no agent).
"""

from __future__ import annotations

from typing import ClassVar

import yaml_rs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openpitrix.netguard import AddressPolicy
from openpitrix.providers.base import (
    Capabilities,
    Credential,
    CredentialInvalid,
    EndpointRefused,
    ZoneUnavailable,
)
from openpitrix.providers.qingcloud.client import (
    DEFAULT_ENDPOINT,
    QingCloudClient,
    check_endpoint,
)
from openpitrix.providers.qingcloud.quota import Needs, check_quota
from openpitrix.providers.qingcloud.vm import DEFAULT_IMAGE, QingCloudVm
from openpitrix.providers.vm.provider import PLANS, VM_TASK_KINDS, VmProvider

MAX_CREDENTIAL_BYTES = 16 * 1024


class AccessKey(BaseModel):
    """The content of a qingcloud runtime credential."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    access_key_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9]+$")
    secret_access_key: str = Field(min_length=1, max_length=256, repr=False)
    zone: str | None = Field(
        None, min_length=1, max_length=64, description="The zone validation checks, if any."
    )
    image_id: str = Field(
        DEFAULT_IMAGE, min_length=1, max_length=64, description="The image nodes boot."
    )
    login_keypair: str | None = Field(
        None, min_length=1, max_length=64, description="The keypair nodes let log in."
    )


def parse_access_key(content: str) -> AccessKey:
    if len(content.encode()) > MAX_CREDENTIAL_BYTES:
        raise CredentialInvalid(f"credential is larger than {MAX_CREDENTIAL_BYTES // 1024} KiB")
    try:
        doc = yaml_rs.loads(content)  # JSON is YAML too
    except Exception:  # yaml_rs raises its own error types
        # The parser's message quotes the text around the error, which may be the secret.
        raise CredentialInvalid("credential is not valid JSON or YAML") from None
    if not isinstance(doc, dict):
        raise CredentialInvalid(
            "credential must be a mapping {access_key_id, secret_access_key, zone?}"
        )
    try:
        return AccessKey.model_validate(doc)
    except ValidationError as exc:
        # Field names and reasons only: pydantic's text would quote the values, secret included.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise CredentialInvalid(f"credential: {problems}") from None


class QingCloudProvider(VmProvider):
    """QingCloud IaaS: VM app clusters of instances and volumes in one zone."""

    name: ClassVar[str] = "qingcloud"
    capabilities: ClassVar[Capabilities] = Capabilities(
        zone_kind="zone",
        credential_format=(
            "JSON or YAML: {access_key_id, secret_access_key, zone?, image_id?, login_keypair?}"
        ),
        cluster_actions=frozenset(PLANS),
        task_kinds=VM_TASK_KINDS,
        package_kinds=frozenset({"vm"}),
        # A zone is shared by every account and runtime: clusters are told apart by name.
        exclusive_zones=False,
    )

    def parse_credential(self, content: str, endpoint_url: str) -> Credential:
        parse_access_key(content)
        try:
            endpoint = check_endpoint(endpoint_url or DEFAULT_ENDPOINT)
        except EndpointRefused as exc:
            raise CredentialInvalid(exc.message, code=exc.code) from None
        return Credential(provider=self.name, endpoint_url=endpoint, content=content)

    def client(
        self, credential: Credential, policy: AddressPolicy, zone: str = ""
    ) -> QingCloudClient:
        """A client for the credential (the caller closes it); `zone` is its default zone."""
        key = parse_access_key(credential.content)
        return QingCloudClient(
            access_key_id=key.access_key_id,
            secret_access_key=key.secret_access_key,
            zone=zone,
            endpoint=credential.endpoint_url or DEFAULT_ENDPOINT,
            policy=policy,
        )

    def open_cloud(self, credential: Credential, zone: str, policy: AddressPolicy) -> QingCloudVm:
        key = parse_access_key(credential.content)
        return QingCloudVm(
            self.client(credential, policy, zone),
            image_id=key.image_id,
            login_keypair=key.login_keypair,
            poll_seconds=self.poll_seconds,
        )

    async def validate_credential(self, credential: Credential, policy: AddressPolicy) -> None:
        key = parse_access_key(credential.content)
        zones = await self.describe_zones(credential, policy)
        if key.zone is not None and key.zone not in zones:
            raise ZoneUnavailable(
                "zone_not_found",
                f"zone {key.zone!r} is not one this key may use; it may use {', '.join(zones)}",
            )

    async def describe_zones(self, credential: Credential, policy: AddressPolicy) -> list[str]:
        async with self.client(credential, policy) as client:
            zones = await client.describe_zones()
        return [z.zone_id for z in zones if z.status in ("", "active")]

    async def claim_zone(
        self,
        credential: Credential,
        zone: str,
        *,
        runtime_id: str,
        create: bool,
        policy: AddressPolicy,
    ) -> None:
        # Nothing to mark and nothing to create (see the module docstring): a claim is the
        # check that the zone is one this account may deploy into, so it is idempotent.
        zones = await self.describe_zones(credential, policy)
        if zone not in zones:
            made = " (QingCloud zones cannot be created)" if create else ""
            raise ZoneUnavailable(
                "zone_not_found", f"QingCloud zone {zone!r} is not available to this key{made}"
            )

    async def release_zone(
        self, credential: Credential, zone: str, *, runtime_id: str, policy: AddressPolicy
    ) -> None:
        return None  # claim_zone left no mark

    async def check_quota(
        self, credential: Credential, zone: str, needs: Needs, policy: AddressPolicy
    ) -> dict[str, int]:
        """What is left of the quotas `needs` touches; ProviderError("insufficient_resources")
        naming what is short (the lifecycle's check task asks the same of `QingCloudVm`)."""
        async with self.client(credential, policy, zone) as client:
            return await check_quota(client, needs)
