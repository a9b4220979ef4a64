"""The aws provider: VM app clusters on AWS EC2, on the shared VM provider (what each action
does in EC2 is in `aws.vm`).

A credential is a JSON or YAML mapping `{access_key_id, secret_access_key, session_token?,
region, image_id?, key_name?, instance_profile?}`; the runtime credential's endpoint URL, when
set, is used for every service instead of AWS's endpoints (an AWS-compatible cloud, a test
server), always through the address guard.

Zones are the region's availability zones: shared by every account, never made, and carrying
no mark a runtime could set. So claiming a zone checks that it exists in the region and records
nothing on the cloud; the runtimes table keeps the claim, and clusters keep apart by the tags of
what they launch.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from openpitrix.netguard import AddressPolicy
from openpitrix.providers.aws.credential import check_endpoint, parse_aws_key
from openpitrix.providers.base import (
    Capabilities,
    Credential,
    CredentialInvalid,
    EndpointRefused,
    Preview,
    PreviewRequest,
    TaskRun,
    ZoneUnavailable,
)
from openpitrix.providers.lazy import import_off_loop
from openpitrix.providers.vm.cloud import VmCloud
from openpitrix.providers.vm.provider import PLANS, VM_TASK_KINDS, VmProvider

# aioboto3/botocore and the modules built on them (client, vm, quota) are imported by the
# methods that call AWS, not here: they cost a process ~11 MB, and a gateway or worker that
# never touches an AWS runtime (or has not yet) should not carry them. Every async method that
# calls AWS first imports them in a thread (`_client_library`, ~0.15 s once per process), so
# the event loop serves on meanwhile; the sync `client` and `open_cloud` then find them loaded.
if TYPE_CHECKING:
    import aioboto3

    from openpitrix.providers.aws.client import AwsClient
    from openpitrix.providers.aws.quota import VcpuRoom
    from openpitrix.providers.aws.vm import AwsVm

log = logging.getLogger(__name__)

CLIENT_MODULES = (
    "aioboto3",
    "openpitrix.providers.aws.client",
    "openpitrix.providers.aws.quota",
    "openpitrix.providers.aws.vm",
)


async def _client_library() -> None:
    await import_off_loop(*CLIENT_MODULES)


class AwsProvider(VmProvider):
    """AWS EC2: VM app clusters of instances and EBS volumes in one availability zone."""

    name: ClassVar[str] = "aws"
    capabilities: ClassVar[Capabilities] = Capabilities(
        zone_kind="availability zone",
        credential_format=(
            "JSON or YAML: {access_key_id, secret_access_key, session_token?, region, "
            "image_id?, key_name?, instance_profile?}"
        ),
        cluster_actions=frozenset(PLANS),
        task_kinds=VM_TASK_KINDS,
        package_kinds=frozenset({"vm"}),
        # An availability zone is shared by every account and runtime: clusters are told
        # apart by their tags.
        exclusive_zones=False,
    )

    def __init__(self) -> None:
        self._session: aioboto3.Session | None = None

    def parse_credential(self, content: str, endpoint_url: str) -> Credential:
        parse_aws_key(content)
        endpoint = ""
        if endpoint_url:
            try:
                endpoint = check_endpoint(endpoint_url)
            except EndpointRefused as exc:
                raise CredentialInvalid(exc.message, code=exc.code) from None
        return Credential(provider=self.name, endpoint_url=endpoint, content=content)

    def client(self, credential: Credential, policy: AddressPolicy) -> AwsClient:
        """A client for the credential (the caller closes it). Every client shares the
        provider's session: it holds no key, only the service models it has loaded."""
        import aioboto3

        from openpitrix.providers.aws.client import AwsClient

        if self._session is None:
            self._session = aioboto3.Session()
        return AwsClient(
            parse_aws_key(credential.content),
            policy=policy,
            endpoint_url=credential.endpoint_url,
            session=self._session,
        )

    def open_cloud(self, credential: Credential, zone: str, policy: AddressPolicy) -> AwsVm:
        from openpitrix.providers.aws.vm import AwsVm

        key = parse_aws_key(credential.content)
        return AwsVm(
            self.client(credential, policy),
            zone,
            image_id=key.image_id,
            key_name=key.key_name,
            instance_profile=key.instance_profile,
            poll_seconds=self.poll_seconds,
        )

    # The VM base's entry points that open a cloud, each after the library's import.
    async def run_task(self, run: TaskRun) -> dict[str, Any]:
        await _client_library()
        return await super().run_task(run)

    async def check_resources(self, run: TaskRun) -> dict[str, Any]:
        await _client_library()
        return await super().check_resources(run)

    async def describe_cluster(
        self, credential: Credential, zone: str, cluster_id: str, policy: AddressPolicy
    ) -> dict[str, Any]:
        await _client_library()
        return await super().describe_cluster(credential, zone, cluster_id, policy)

    async def preview(self, request: PreviewRequest) -> Preview:
        await _client_library()
        return await super().preview(request)

    async def _run(self, run: TaskRun, cloud: VmCloud) -> dict[str, Any]:
        """The VM base's task, and what it cost in AWS API calls: logged, and kept in the
        task's result as `cloud_calls` (but the survey's, whose result is the state)."""
        from openpitrix.providers.aws.vm import AwsVm

        result = await super()._run(run, cloud)
        if isinstance(cloud, AwsVm):
            calls = dict(sorted(cloud.client.calls.items()))
            log.info(
                "aws cloud calls cluster=%s task=%s total=%d %s",
                run.cluster_id,
                run.action,
                sum(calls.values()),
                " ".join(f"{k}={v}" for k, v in calls.items()),
            )
            if run.action != "survey":
                result = {**result, "cloud_calls": calls}
        return result

    async def validate_credential(self, credential: Credential, policy: AddressPolicy) -> None:
        # GetCallerIdentity needs no permission at all, so it proves the key and nothing
        # else; the zones call then proves the region is one EC2 serves this key in.
        await _client_library()
        async with self.client(credential, policy) as client:
            await client.get_caller_identity()
            zones = await client.describe_zones()
        if not zones:
            raise ZoneUnavailable(
                "region_not_found", f"AWS region {client.region!r} has no availability zones"
            )

    async def describe_zones(self, credential: Credential, policy: AddressPolicy) -> list[str]:
        await _client_library()
        async with self.client(credential, policy) as client:
            zones = await client.describe_zones()
        return [z.name for z in zones if z.state == "available"]

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
        # check that the zone is one of the region's, so it is idempotent.
        zones = await self.describe_zones(credential, policy)
        if zone not in zones:
            made = " (availability zones cannot be created)" if create else ""
            raise ZoneUnavailable(
                "zone_not_found",
                f"AWS availability zone {zone!r} is not available in the credential's region"
                f"{made}; it has {', '.join(zones) or 'none'}",
            )

    async def release_zone(
        self, credential: Credential, zone: str, *, runtime_id: str, policy: AddressPolicy
    ) -> None:
        return None  # claim_zone left no mark

    async def vcpu_room(
        self,
        credential: Credential,
        policy: AddressPolicy,
        *,
        vcpus: int = 0,
        instances: int = 0,
    ) -> VcpuRoom:
        """The region's room for `instances` more instances of `vcpus` vCPUs together;
        ProviderError("insufficient_resources") naming the shortfall (the lifecycle's check
        task asks the same of `AwsVm`)."""
        await _client_library()
        from openpitrix.providers.aws import quota

        async with self.client(credential, policy) as client:
            return await quota.vcpu_room(client, vcpus=vcpus, instances=instances)
