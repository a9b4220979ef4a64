"""Typed QingCloud API results: the fields the provider reads, other fields ignored."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Result(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Zone(_Result):
    zone_id: str
    status: str = ""  # active, faulty, defunct


class InstanceStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    STOPPED = "stopped"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"
    CEASED = "ceased"


class VxNetAttachment(_Result):
    vxnet_id: str = ""
    vxnet_name: str = ""
    nic_id: str = ""
    private_ip: str = ""


class ImageRef(_Result):
    image_id: str = ""


class Instance(_Result):
    instance_id: str
    instance_name: str = ""
    status: str = ""  # an InstanceStatus value; kept a str so a new status does not break parsing
    transition_status: str = ""  # creating, starting, stopping, terminating, ... or ""
    instance_type: str = ""
    vcpus_current: int = 0
    memory_current: int = 0  # MiB
    image: ImageRef | None = None
    vxnets: list[VxNetAttachment] = Field(default_factory=list)
    volume_ids: list[str] = Field(default_factory=list)
    zone_id: str = ""
    create_time: str = ""

    @property
    def private_ip(self) -> str:
        """The address on the first network, "" until the instance has one."""
        return next((nic.private_ip for nic in self.vxnets if nic.private_ip), "")


class AttachedInstance(_Result):
    """The instance a volume is attached to, as DescribeVolumes shows it ({} when none)."""

    instance_id: str = ""
    instance_name: str = ""
    device: str = ""


class Volume(_Result):
    volume_id: str
    volume_name: str = ""
    size: int = 0  # GiB
    volume_type: int = 0
    status: str = ""  # pending, available, in-use, suspended, deleted, ceased
    transition_status: str = ""  # creating, attaching, detaching, deleting, ... or ""
    instance: AttachedInstance | None = None
    zone_id: str = ""

    @property
    def instance_id(self) -> str:
        """The instance the volume is attached to, "" if none."""
        return self.instance.instance_id if self.instance is not None else ""


class JobStatus(StrEnum):
    PENDING = "pending"
    WORKING = "working"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    DONE_WITH_FAILURE = "done with failure"


TERMINAL_JOB_STATUSES = frozenset(
    {JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.DONE_WITH_FAILURE}
)


class Job(_Result):
    job_id: str
    job_action: str = ""
    status: str = ""  # a JobStatus value
    resource_ids: str = ""  # comma separated, as QingCloud gives them
    create_time: str = ""
    status_time: str = ""

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == JobStatus.SUCCESSFUL


@dataclass(frozen=True)
class Accepted:
    """An action that started a job: the job, and the ids of what it makes (if it makes any)."""

    job_id: str
    ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class UserData:
    """User data for RunInstances. `exec` runs `content` (a script starting with `#!`) once at
    first boot; `plain` writes it to /etc/qingcloud/userdata/userdata.string. QingCloud takes
    it base64-encoded in `userdata_value` with `need_userdata=1`."""

    content: str
    kind: Literal["exec", "plain"] = "exec"
    path: str | None = None  # where metadata and user data files go (QingCloud's default if None)

    def params(self) -> dict[str, str]:
        params = {
            "need_userdata": "1",
            "userdata_type": self.kind,
            "userdata_value": base64.b64encode(self.content.encode()).decode(),
        }
        if self.path is not None:
            params["userdata_path"] = self.path
        return params
