"""An async client for the AWS APIs a VM cluster needs (EC2, STS, SSM, Service Quotas), over
aioboto3 and through the address guard.

One client holds one access key in one region, and makes each service's botocore client on
first use (closed with the client). Every connection goes through `guard.GuardedAioHttpSession`:
the endpoint URL is user input, and even AWS's own endpoints are checked like any other.

botocore's retries are off (one attempt per call): the job engine retries a task whose error is
`retryable`, with its own backoff, and a task is idempotent by design; retrying inside the
client as well would multiply attempts under throttling (the case where backing off matters
most) and hide what a create costs. `calls` counts every request sent, by service and operation.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

import aioboto3
from aiobotocore.config import AioConfig
from botocore import xform_name
from botocore.parsers import ResponseParserError

from openpitrix.netguard import AddressPolicy
from openpitrix.providers.aws.credential import AwsKey, check_endpoint
from openpitrix.providers.aws.errors import CALL_ERRORS, AwsError, error_for
from openpitrix.providers.aws.guard import GuardedAioHttpSession, guarded_session_cls
from openpitrix.providers.aws.results import (
    LIVE_STATES,
    CommandInvocation,
    Identity,
    Image,
    Instance,
    StateChange,
    VcpuLimit,
    Volume,
    Zone,
)
from openpitrix.providers.base import ProviderError

log = logging.getLogger(__name__)

# Service Quotas: "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", in vCPUs.
STANDARD_VCPU_QUOTA: Final = "L-1216C47A"
MAX_USER_DATA: Final = 16 * 1024  # EC2's limit, before base64
MAX_CLIENT_TOKEN: Final = 64
# AWS takes at most 50 tags per resource; the client-token tag is one of them.
MAX_TAGS: Final = 50


@dataclass(frozen=True)
class InstanceSpec:
    """One instance to launch. `client_token` makes RunInstances idempotent on AWS; it is also
    kept as the `openpitrix:client-token` tag, which `ensure_instance` looks for first."""

    client_token: str
    image_id: str
    instance_type: str
    zone: str
    tags: Mapping[str, str] = field(default_factory=dict)
    user_data: str = ""
    # A data volume of this many GiB on `volume_device` (0: none), and the root volume's size
    # (None: the image's).
    volume_size: int = 0
    volume_device: str = "/dev/sdf"
    volume_type: str = "gp3"
    root_size: int | None = None
    root_device: str = "/dev/xvda"
    delete_volumes_on_termination: bool = True
    subnet_id: str | None = None
    security_group_ids: tuple[str, ...] = ()
    key_name: str | None = None
    # An instance profile whose role allows SSM, for service commands after boot.
    instance_profile: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.client_token) <= MAX_CLIENT_TOKEN or not self.client_token.isascii():
            raise ValueError(f"a client token is 1 to {MAX_CLIENT_TOKEN} ASCII characters")
        if len(self.user_data.encode()) > MAX_USER_DATA:
            raise ValueError(f"user data is larger than EC2's {MAX_USER_DATA // 1024} KiB")
        if len(self.tags) + 1 > MAX_TAGS:
            raise ValueError(f"an instance takes at most {MAX_TAGS - 1} tags here")


CLIENT_TOKEN_TAG: Final = "openpitrix:client-token"  # noqa: S105  a tag key


def _filters(tags: Mapping[str, str], **named: Sequence[str]) -> list[dict[str, Any]]:
    found = [{"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()]
    found += [{"Name": name.replace("_", "-"), "Values": list(v)} for name, v in named.items()]
    return found


def _tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in tags.items()]


class AwsClient:
    """One access key in one region. Use as an async context manager (or call `aclose`)."""

    def __init__(
        self,
        key: AwsKey,
        *,
        policy: AddressPolicy,
        endpoint_url: str = "",
        timeout: float = 30.0,
        max_attempts: int = 1,
        session: aioboto3.Session | None = None,
    ) -> None:
        self.region = key.region
        self.access_key_id = key.access_key_id
        self.endpoint_url = check_endpoint(endpoint_url) if endpoint_url else ""
        self.calls: Counter[str] = Counter()
        self._key = key
        # A session caches the service models it has loaded (EC2's takes ~0.1 s to read), so
        # a provider shares one between its clients; the key goes to each client, not to it.
        self._session = session if session is not None else aioboto3.Session()
        self._http_cls = guarded_session_cls(policy)
        self._config = AioConfig(
            http_session_cls=self._http_cls,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=timeout,
            read_timeout=timeout,
            # AWS_ENDPOINT_URL* in the environment or ~/.aws/config must not redirect calls.
            ignore_configured_endpoint_urls=True,
            proxies={},
        )
        self._stack = AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self._opening = asyncio.Lock()

    def __repr__(self) -> str:
        # The secret never appears, whatever logs the client.
        where = self.endpoint_url or self.region
        return f"AwsClient(endpoint={where!r}, key={self.access_key_id!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._clients.clear()
        await self._stack.aclose()

    @property
    def total_calls(self) -> int:
        """Requests sent so far, every service and operation together."""
        return sum(self.calls.values())

    # ---------------------------------------------------------------------------- the wire

    async def _client(self, service: str) -> Any:
        async with self._opening:
            if service not in self._clients:
                client = await self._stack.enter_async_context(
                    self._session.client(  # type: ignore[call-overload]
                        service,
                        region_name=self._key.region,
                        aws_access_key_id=self._key.access_key_id,
                        aws_secret_access_key=self._key.secret_access_key,
                        aws_session_token=self._key.session_token,
                        endpoint_url=self.endpoint_url or None,
                        config=self._config,
                        verify=True,
                    )
                )
                # aiobotocore drops `http_session_cls` where it merges configs; refuse to run
                # unguarded rather than trust that no such path is taken.
                session = getattr(getattr(client, "_endpoint", None), "http_session", None)
                if not isinstance(session, GuardedAioHttpSession):
                    raise RuntimeError(f"the {service} client is not using the guarded session")
                client.meta.events.register("before-parse", _vet_answer)
                client.meta.events.register("before-send", self._count)
                self._clients[service] = client
            return self._clients[service]

    def _count(self, event_name: str, **_: Any) -> None:
        # before-send.<service id>.<operation>: once per request put on the wire (or refused by
        # the guard), so a call botocore refuses before sending (a bad parameter) is not one.
        _event, service, operation = event_name.split(".", 2)
        self.calls[f"{service.lower()}:{operation}"] += 1

    async def call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """Send one `operation` (AWS's name, `RunInstances`) to `service` and return its
        answer; raise the ProviderError for a refusal or a transport failure."""
        client = await self._client(service)
        method = getattr(client, xform_name(operation))
        try:
            answer: dict[str, Any] = await method(**params)
        except CALL_ERRORS as exc:
            raise error_for(operation, exc) from exc
        return answer

    async def _pages(
        self, service: str, operation: str, key: str, **params: Any
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            answer = await self.call(
                service, operation, **params, **({"NextToken": token} if token else {})
            )
            items.extend(answer.get(key, []))
            token = answer.get("NextToken")
            if not token:
                return items

    # ---------------------------------------------------------------------------- identity

    async def get_caller_identity(self) -> Identity:
        answer = await self.call("sts", "GetCallerIdentity")
        return Identity(
            account=str(answer.get("Account", "")),
            arn=str(answer.get("Arn", "")),
            user_id=str(answer.get("UserId", "")),
        )

    async def describe_regions(self) -> list[str]:
        answer = await self.call("ec2", "DescribeRegions")
        return sorted(str(r["RegionName"]) for r in answer.get("Regions", []))

    async def describe_zones(self) -> list[Zone]:
        """The client region's availability zones (not Local Zones or Wavelength Zones)."""
        answer = await self.call(
            "ec2",
            "DescribeAvailabilityZones",
            Filters=[{"Name": "region-name", "Values": [self.region]}],
        )
        return [
            Zone(
                name=str(z["ZoneName"]),
                zone_id=str(z.get("ZoneId", "")),
                state=str(z.get("State", "")),
            )
            for z in answer.get("AvailabilityZones", [])
            if z.get("ZoneType", "availability-zone") == "availability-zone"
        ]

    # ---------------------------------------------------------------------------- images

    async def describe_images(
        self, image_ids: Sequence[str] = (), *, owners: Sequence[str] = (), name: str = ""
    ) -> list[Image]:
        params: dict[str, Any] = {}
        if image_ids:
            params["ImageIds"] = list(image_ids)
        if owners:
            params["Owners"] = list(owners)
        if name:
            params["Filters"] = [{"Name": "name", "Values": [name]}]
        answer = await self.call("ec2", "DescribeImages", **params)
        return [Image.of(item) for item in answer.get("Images", [])]

    # ---------------------------------------------------------------------------- instances

    async def run_instance(self, spec: InstanceSpec) -> Instance:
        """Launch one instance. On AWS a second call with the same client token (within its
        validity) returns the first launch instead of making another; `ensure_instance` also
        covers clouds that do not honour client tokens."""
        tags = {**spec.tags, CLIENT_TOKEN_TAG: spec.client_token}
        tag_specs = [{"ResourceType": "instance", "Tags": _tags(tags)}]
        if spec.volume_size or spec.root_size:
            tag_specs.append({"ResourceType": "volume", "Tags": _tags(tags)})
        devices: list[dict[str, Any]] = []
        if spec.root_size:
            devices.append(
                {
                    "DeviceName": spec.root_device,
                    "Ebs": {
                        "VolumeSize": spec.root_size,
                        "VolumeType": spec.volume_type,
                        "DeleteOnTermination": True,
                    },
                }
            )
        if spec.volume_size:
            devices.append(
                {
                    "DeviceName": spec.volume_device,
                    "Ebs": {
                        "VolumeSize": spec.volume_size,
                        "VolumeType": spec.volume_type,
                        "DeleteOnTermination": spec.delete_volumes_on_termination,
                    },
                }
            )
        params: dict[str, Any] = {
            "ImageId": spec.image_id,
            "InstanceType": spec.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": spec.client_token,
            "Placement": {"AvailabilityZone": spec.zone},
            "TagSpecifications": tag_specs,
            # IMDSv2 only: a workload's SSRF cannot read the instance's role credentials.
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        }
        if devices:
            params["BlockDeviceMappings"] = devices
        if spec.user_data:
            params["UserData"] = spec.user_data  # botocore base64-encodes it
        if spec.subnet_id:
            params["SubnetId"] = spec.subnet_id
        if spec.security_group_ids:
            params["SecurityGroupIds"] = list(spec.security_group_ids)
        if spec.key_name:
            params["KeyName"] = spec.key_name
        if spec.instance_profile:
            params["IamInstanceProfile"] = {"Name": spec.instance_profile}
        answer = await self.call("ec2", "RunInstances", **params)
        instances = answer.get("Instances", [])
        if len(instances) != 1:
            raise ProviderError(
                "cloud_error", f"AWS RunInstances returned {len(instances)} instances, not 1"
            )
        return Instance.of(instances[0])

    async def ensure_instance(self, spec: InstanceSpec) -> tuple[Instance, bool]:
        """The live instance launched for `spec.client_token`, launching it if there is none;
        and whether this call launched it. Two calls per launch, one when it exists."""
        found = await self.find_instances({CLIENT_TOKEN_TAG: spec.client_token})
        if found:
            return found[0], False
        return await self.run_instance(spec), True

    async def find_instances(
        self,
        tags: Mapping[str, str] | None = None,
        *,
        instance_ids: Sequence[str] = (),
        states: Sequence[str] = LIVE_STATES,
    ) -> list[Instance]:
        """The instances carrying every one of `tags` (and among `instance_ids`, if given) in
        one of `states` (the live ones by default: terminated instances linger for an hour)."""
        params: dict[str, Any] = {"Filters": _filters(tags or {}, instance_state_name=states)}
        if instance_ids:
            params["InstanceIds"] = list(instance_ids)
        reservations = await self._pages("ec2", "DescribeInstances", "Reservations", **params)
        return [Instance.of(item) for r in reservations for item in r.get("Instances", [])]

    async def stop_instances(
        self, instance_ids: Sequence[str], *, force: bool = False
    ) -> list[StateChange]:
        answer = await self.call(
            "ec2", "StopInstances", InstanceIds=list(instance_ids), Force=force
        )
        return _changes(answer.get("StoppingInstances", []))

    async def start_instances(self, instance_ids: Sequence[str]) -> list[StateChange]:
        answer = await self.call("ec2", "StartInstances", InstanceIds=list(instance_ids))
        return _changes(answer.get("StartingInstances", []))

    async def terminate_instances(self, instance_ids: Sequence[str]) -> list[StateChange]:
        answer = await self.call("ec2", "TerminateInstances", InstanceIds=list(instance_ids))
        return _changes(answer.get("TerminatingInstances", []))

    async def modify_instance_type(self, instance_id: str, instance_type: str) -> None:
        """Change a stopped instance's type (AWS refuses it for a running one:
        `cloud_incorrect_state`)."""
        await self.call(
            "ec2",
            "ModifyInstanceAttribute",
            InstanceId=instance_id,
            InstanceType={"Value": instance_type},
        )

    async def create_tags(self, resource_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        await self.call("ec2", "CreateTags", Resources=list(resource_ids), Tags=_tags(tags))

    # ---------------------------------------------------------------------------- volumes

    async def describe_volumes(
        self,
        volume_ids: Sequence[str] = (),
        *,
        tags: Mapping[str, str] | None = None,
        instance_id: str = "",
    ) -> list[Volume]:
        params: dict[str, Any] = {}
        filters = _filters(tags or {})
        if instance_id:
            filters.append({"Name": "attachment.instance-id", "Values": [instance_id]})
        if filters:
            params["Filters"] = filters
        if volume_ids:
            params["VolumeIds"] = list(volume_ids)
        return [
            Volume.of(v) for v in await self._pages("ec2", "DescribeVolumes", "Volumes", **params)
        ]

    async def modify_volume(self, volume_id: str, size: int) -> None:
        await self.call("ec2", "ModifyVolume", VolumeId=volume_id, Size=size)

    async def grow_volume(self, volume_id: str, size: int) -> bool:
        """Grow the volume to `size` GiB unless it is that large already (AWS refuses a
        modification to the same size, so a redelivered task must look first); whether it was
        grown. A volume is never shrunk: EBS cannot."""
        volumes = await self.describe_volumes([volume_id])
        if not volumes:
            raise ProviderError("cloud_resource_not_found", f"AWS volume {volume_id} is gone")
        if volumes[0].size >= size:
            return False
        await self.modify_volume(volume_id, size)
        return True

    async def create_volume(
        self, zone: str, size: int, tags: Mapping[str, str], *, volume_type: str = "gp3"
    ) -> Volume:
        answer = await self.call(
            "ec2",
            "CreateVolume",
            AvailabilityZone=zone,
            Size=size,
            VolumeType=volume_type,
            TagSpecifications=[{"ResourceType": "volume", "Tags": _tags(tags)}],
        )
        return Volume.of(answer)

    async def attach_volume(self, volume_id: str, instance_id: str, device: str) -> None:
        await self.call(
            "ec2", "AttachVolume", VolumeId=volume_id, InstanceId=instance_id, Device=device
        )

    async def delete_volume(self, volume_id: str) -> None:
        await self.call("ec2", "DeleteVolume", VolumeId=volume_id)

    async def instance_type_sizes(self, names: Sequence[str]) -> dict[str, tuple[int, int]]:
        """The vCPUs and memory (MiB) of each of the instance types `names`."""
        items = await self._pages(
            "ec2", "DescribeInstanceTypes", "InstanceTypes", InstanceTypes=sorted(set(names))
        )
        return {
            str(item["InstanceType"]): (
                int(item.get("VCpuInfo", {}).get("DefaultVCpus", 0)),
                int(item.get("MemoryInfo", {}).get("SizeInMiB", 0)),
            )
            for item in items
        }

    async def describe_instance_types(self, names: Sequence[str]) -> dict[str, int]:
        """The vCPUs of each of the instance types `names`."""
        items = await self._pages(
            "ec2", "DescribeInstanceTypes", "InstanceTypes", InstanceTypes=sorted(set(names))
        )
        return {
            str(item["InstanceType"]): int(item.get("VCpuInfo", {}).get("DefaultVCpus", 0))
            for item in items
        }

    # ---------------------------------------------------------------------------- quotas

    async def vcpu_limit(self) -> VcpuLimit:
        """The account's limit on running on-demand standard instances in the region: Service
        Quotas' vCPU quota, or where that service is not there (AWS-compatible clouds,
        partitions without it) EC2's older `max-instances` account attribute."""
        try:
            answer = await self.call(
                "service-quotas",
                "GetServiceQuota",
                ServiceCode="ec2",
                QuotaCode=STANDARD_VCPU_QUOTA,
            )
        except AwsError as exc:
            if exc.code not in ("cloud_resource_not_found", "endpoint_not_aws"):
                raise
            log.info("aws vcpu quota unavailable (%s), using account attributes", exc.aws_code)
        except ProviderError as exc:
            if exc.code != "endpoint_not_aws":
                raise
        else:
            return VcpuLimit(
                value=int(float(answer["Quota"]["Value"])), unit="vCPUs", source="service-quotas"
            )
        answer = await self.call(
            "ec2", "DescribeAccountAttributes", AttributeNames=["max-instances"]
        )
        for attribute in answer.get("AccountAttributes", []):
            if attribute.get("AttributeName") == "max-instances":
                values = attribute.get("AttributeValues", [])
                if values:
                    return VcpuLimit(
                        value=int(values[0]["AttributeValue"]),
                        unit="instances",
                        source="account-attributes",
                    )
        raise ProviderError("cloud_error", "AWS reports neither a vCPU quota nor max-instances")

    # ---------------------------------------------------------------------------- commands

    async def send_command(
        self,
        instance_ids: Sequence[str],
        commands: Sequence[str],
        *,
        timeout_seconds: int = 600,
        comment: str = "",
    ) -> str:
        """Run shell `commands` on the instances through SSM (AWS-RunShellScript); the command
        id. The instances need the SSM agent and an instance profile that allows it."""
        answer = await self.call(
            "ssm",
            "SendCommand",
            InstanceIds=list(instance_ids),
            DocumentName="AWS-RunShellScript",
            Parameters={
                "commands": list(commands),
                "executionTimeout": [str(timeout_seconds)],
            },
            TimeoutSeconds=max(30, min(timeout_seconds, 2592000)),
            Comment=comment[:100],
        )
        return str(answer["Command"]["CommandId"])

    async def get_command_invocation(self, command_id: str, instance_id: str) -> CommandInvocation:
        answer = await self.call(
            "ssm", "GetCommandInvocation", CommandId=command_id, InstanceId=instance_id
        )
        return CommandInvocation(
            command_id=command_id,
            instance_id=instance_id,
            status=str(answer.get("Status", "")),
            response_code=int(answer.get("ResponseCode", -1)),
            stdout=str(answer.get("StandardOutputContent", "")),
            stderr=str(answer.get("StandardErrorContent", "")),
        )


_XML_ROOT: Final = re.compile(rb"^\s*(?:<\?xml[^>]*\?>\s*)?<([A-Za-z0-9_]+)[\s>/]")
_XML_PROTOCOLS: Final = frozenset({"query", "ec2"})
_JSON_PROTOCOLS: Final = frozenset({"json", "rest-json"})


def _vet_answer(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
    """Refuse a successful answer that is not shaped like the operation's AWS answer.

    botocore assumes the endpoint is AWS's: a web page answered with 200 makes its parser fail
    with a bare KeyError, or pass as an empty result. An endpoint is user input, so its answer
    is checked here (a `before-parse` hook) and refused as `endpoint_not_aws`."""
    if response_dict.get("status_code", 0) >= 300:
        return  # error answers: botocore makes a non-AWS one an HTTP-status code (errors.py)
    body = response_dict.get("body", b"")
    if not isinstance(body, bytes):
        return  # a streamed body (no operation used here streams)
    protocol = operation_model.service_model.resolved_protocol
    if protocol in _XML_PROTOCOLS:
        root = _XML_ROOT.match(body[:512])
        fine = root is not None and root.group(1) == f"{operation_model.name}Response".encode()
    elif protocol in _JSON_PROTOCOLS:
        fine = body.lstrip()[:1] == b"{"
    else:
        fine = True
    if not fine:
        raise ResponseParserError(f"the answer to {operation_model.name} is not an AWS answer")


def _changes(items: list[dict[str, Any]]) -> list[StateChange]:
    return [
        StateChange(
            instance_id=str(item["InstanceId"]),
            previous=str((item.get("PreviousState") or {}).get("Name", "")),
            current=str((item.get("CurrentState") or {}).get("Name", "")),
        )
        for item in items
    ]
