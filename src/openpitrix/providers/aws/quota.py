"""Whether the account's EC2 limit in the region can hold what a deploy would launch.

AWS limits running on-demand instances of the standard families (A, C, D, H, I, M, R, T, Z) by
their vCPUs together (Service Quotas `L-1216C47A`); where Service Quotas is not there, EC2's
older `max-instances` account attribute limits their number. Stopped instances count for
neither. The check is advisory (another deploy may launch in between): RunInstances' own
`VcpuLimitExceeded` stays the last word, and maps to the same `insufficient_resources`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from openpitrix.providers.aws.client import AwsClient
from openpitrix.providers.aws.instance_types import BY_NAME
from openpitrix.providers.aws.results import VcpuLimit
from openpitrix.providers.base import ProviderError

STANDARD_FAMILIES: Final = frozenset("acdhimrtz")
RUNNING_STATES: Final = ("pending", "running")


@dataclass(frozen=True)
class VcpuRoom:
    """The limit, what running instances use of it, and what is left (in `limit.unit`)."""

    limit: VcpuLimit
    used: int

    @property
    def left(self) -> int:
        return max(self.limit.value - self.used, 0)

    def as_dict(self) -> dict[str, int | str]:
        return {
            "limit": self.limit.value,
            "used": self.used,
            "left": self.left,
            "unit": self.limit.unit,
            "source": self.limit.source,
        }


def is_standard(instance_type: str) -> bool:
    return instance_type[:1] in STANDARD_FAMILIES


async def vcpu_room(client: AwsClient, *, vcpus: int = 0, instances: int = 0) -> VcpuRoom:
    """The room the region has for `instances` more instances of `vcpus` vCPUs together;
    ProviderError("insufficient_resources") naming the shortfall when it has too little."""
    limit = await client.vcpu_limit()
    running = [
        i
        for i in await client.find_instances(states=RUNNING_STATES)
        if is_standard(i.instance_type)
    ]
    if limit.unit == "instances":
        used, needed = len(running), instances
    else:
        counts = {i.instance_id: i.vcpus for i in running}
        unknown = {
            i.instance_type for i in running if i.vcpus is None and i.instance_type not in BY_NAME
        }
        sizes = await client.describe_instance_types(sorted(unknown)) if unknown else {}
        used = sum(
            counts[i.instance_id]
            or (BY_NAME[i.instance_type].vcpus if i.instance_type in BY_NAME else 0)
            or sizes.get(i.instance_type, 0)
            for i in running
        )
        needed = vcpus
    room = VcpuRoom(limit=limit, used=used)
    if needed > room.left:
        raise ProviderError(
            "insufficient_resources",
            f"AWS region {client.region}: {needed} {limit.unit} of on-demand standard instances "
            f"needed, {room.left} left of the limit of {limit.value} ({limit.source})",
        )
    return room
