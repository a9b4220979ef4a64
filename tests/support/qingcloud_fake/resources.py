"""What the fake QingCloud keeps: instances, volumes and jobs, as its API shows them."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.support.qingcloud_fake.wire import TIME_FORMAT, invalid

CPUS = {1, 2, 4, 8, 16}
MEMORIES = {1024, 2048, 4096, 6144, 8192, 12288, 16384, 24576, 32768}
INSTANCE_TYPES = {"c1m1": (1, 1024), "c1m2": (1, 2048), "c2m4": (2, 4096), "c4m8": (4, 8192)}
DEFAULT_QUOTA = {
    "instance": 20,
    "cpu": 40,
    "memory": 81920,
    "volume": 20,
    "volume_size": 2000,
}


def now_text() -> str:
    return datetime.now(UTC).strftime(TIME_FORMAT)


def new_id(prefix: str) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(8))


@dataclass
class FakeInstance:
    instance_id: str
    instance_name: str
    image_id: str
    instance_type: str
    vcpus: int
    memory: int
    zone: str
    vxnet_id: str
    status: str = "pending"
    transition_status: str = "creating"
    private_ip: str = ""
    userdata_type: str = ""
    userdata: str = ""  # decoded
    volume_ids: list[str] = field(default_factory=list)
    create_time: str = field(default_factory=now_text)
    status_time: str = field(default_factory=now_text)
    # Shown by DescribeInstances (and found by the actions that name it): from when the
    # RunInstances job making it starts, not when RunInstances answers (see Cloud).
    listed: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "instance_name": self.instance_name,
            "status": self.status,
            "transition_status": self.transition_status,
            "instance_type": self.instance_type,
            "vcpus_current": self.vcpus,
            "memory_current": self.memory,
            "image": {"image_id": self.image_id},
            "vxnets": [
                {
                    "vxnet_id": self.vxnet_id,
                    "vxnet_name": "fake network",
                    "nic_id": f"52:54:{self.instance_id[2:6]}",
                    "private_ip": self.private_ip,
                }
            ],
            "volume_ids": list(self.volume_ids),
            "zone_id": self.zone,
            "create_time": self.create_time,
            "status_time": self.status_time,
        }


@dataclass
class FakeVolume:
    volume_id: str
    volume_name: str
    size: int
    volume_type: int
    zone: str
    status: str = "pending"
    transition_status: str = "creating"
    instance_id: str = ""
    create_time: str = field(default_factory=now_text)
    status_time: str = field(default_factory=now_text)


@dataclass
class FakeJob:
    job_id: str
    job_action: str
    resource_ids: list[str]
    zone: str
    status: str = "pending"
    create_time: str = field(default_factory=now_text)
    status_time: str = field(default_factory=now_text)
    held: bool = False  # kept pending by a test (`QingCloudFake.hold_jobs`) right now

    def as_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "job_action": self.job_action,
            "status": self.status,
            "resource_ids": ",".join(self.resource_ids),
            "zone_id": self.zone,
            "create_time": self.create_time,
            "status_time": self.status_time,
            "owner": "usr-fake",
        }


def move(resource: FakeInstance | FakeVolume, status: str) -> None:
    resource.status = status
    resource.transition_status = ""
    resource.status_time = now_text()


def page(items: list[Any], args: dict[str, Any]) -> list[Any]:
    offset, limit = args.get("offset", 0), args.get("limit", 20)
    if offset < 0 or not 1 <= limit <= 100:
        raise invalid("offset should be >= 0 and limit between 1 and 100")
    return items[offset : offset + limit]
