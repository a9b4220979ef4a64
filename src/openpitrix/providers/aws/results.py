"""What the AWS client returns: the few fields of AWS's answers that the provider uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

# Instance states that hold (or will hold) capacity: what "the cluster's instances" means.
LIVE_STATES: Final = ("pending", "running", "stopping", "stopped")


def tag_dict(tags: list[dict[str, Any]] | None) -> dict[str, str]:
    return {str(t["Key"]): str(t.get("Value", "")) for t in tags or []}


@dataclass(frozen=True)
class Zone:
    name: str  # us-east-1a
    zone_id: str  # use1-az1
    state: str  # available, information, impaired, unavailable


@dataclass(frozen=True)
class Identity:
    account: str
    arn: str
    user_id: str


@dataclass(frozen=True)
class Attachment:
    instance_id: str
    device: str
    state: str


@dataclass(frozen=True)
class Volume:
    volume_id: str
    size: int  # GiB
    state: str  # creating, available, in-use, deleting, deleted, error
    zone: str
    volume_type: str
    attachments: tuple[Attachment, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, item: dict[str, Any]) -> Volume:
        return cls(
            volume_id=str(item["VolumeId"]),
            size=int(item.get("Size", 0)),
            state=str(item.get("State", "")),
            zone=str(item.get("AvailabilityZone", "")),
            volume_type=str(item.get("VolumeType", "")),
            attachments=tuple(
                Attachment(
                    instance_id=str(a.get("InstanceId", "")),
                    device=str(a.get("Device", "")),
                    state=str(a.get("State", "")),
                )
                for a in item.get("Attachments", [])
            ),
            tags=tag_dict(item.get("Tags")),
        )


@dataclass(frozen=True)
class Instance:
    instance_id: str
    state: str  # pending, running, stopping, stopped, shutting-down, terminated
    instance_type: str
    zone: str
    image_id: str
    private_ip: str = ""
    public_ip: str = ""
    # Devices and the EBS volumes attached on them, root included.
    volumes: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    vcpus: int | None = None  # from CpuOptions, when AWS gives them

    @classmethod
    def of(cls, item: dict[str, Any]) -> Instance:
        cpu = item.get("CpuOptions") or {}
        vcpus = None
        if "CoreCount" in cpu:
            vcpus = int(cpu["CoreCount"]) * int(cpu.get("ThreadsPerCore", 1))
        return cls(
            instance_id=str(item["InstanceId"]),
            state=str((item.get("State") or {}).get("Name", "")),
            instance_type=str(item.get("InstanceType", "")),
            zone=str((item.get("Placement") or {}).get("AvailabilityZone", "")),
            image_id=str(item.get("ImageId", "")),
            private_ip=str(item.get("PrivateIpAddress", "") or ""),
            public_ip=str(item.get("PublicIpAddress", "") or ""),
            volumes={
                str(m["DeviceName"]): str(m["Ebs"]["VolumeId"])
                for m in item.get("BlockDeviceMappings", [])
                if "Ebs" in m and "DeviceName" in m
            },
            tags=tag_dict(item.get("Tags")),
            vcpus=vcpus,
        )


@dataclass(frozen=True)
class Image:
    image_id: str
    name: str
    state: str
    architecture: str
    root_device: str

    @classmethod
    def of(cls, item: dict[str, Any]) -> Image:
        return cls(
            image_id=str(item["ImageId"]),
            name=str(item.get("Name", "")),
            state=str(item.get("State", "")),
            architecture=str(item.get("Architecture", "")),
            root_device=str(item.get("RootDeviceName", "")),
        )


@dataclass(frozen=True)
class StateChange:
    instance_id: str
    previous: str
    current: str


@dataclass(frozen=True)
class CommandInvocation:
    """One instance's run of an SSM command."""

    command_id: str
    instance_id: str
    # Pending, InProgress, Delayed, Success, Cancelled, TimedOut, Failed, Cancelling
    status: str
    response_code: int
    stdout: str
    stderr: str

    @property
    def done(self) -> bool:
        return self.status not in ("Pending", "InProgress", "Delayed", "Cancelling")


@dataclass(frozen=True)
class VcpuLimit:
    """How much the account may run at once: AWS's vCPU quota for on-demand standard
    instances, or (where Service Quotas is not available) the older instance-count limit."""

    value: int
    unit: Literal["vCPUs", "instances"]
    source: Literal["service-quotas", "account-attributes"]
