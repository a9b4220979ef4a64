"""Whether a QingCloud zone's quotas can hold what a deploy would make, before it makes it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from openpitrix.providers.base import ProviderError
from openpitrix.providers.qingcloud.client import QingCloudClient

# QingCloud's resource types (GetQuotaLeft) for what a VM cluster consumes, and their units.
UNITS = {
    "instance": "instances",
    "cpu": "vCPUs",
    "memory": "MiB of memory",
    "volume": "volumes",
    "volume_size": "GiB of volumes",
}


@dataclass(frozen=True)
class Needs:
    """What a deploy would add to the account, by QingCloud resource type."""

    instance: int = 0
    cpu: int = 0
    memory: int = 0  # MiB
    volume: int = 0
    volume_size: int = 0  # GiB

    def wanted(self) -> dict[str, int]:
        return {name: amount for name, amount in asdict(self).items() if amount > 0}


async def check_quota(client: QingCloudClient, needs: Needs) -> dict[str, int]:
    """What is left of each quota the deploy needs; raise ProviderError
    ("insufficient_resources") naming every resource that is short."""
    wanted = needs.wanted()
    if not wanted:
        return {}
    left = await client.get_quota_left(sorted(wanted))
    short = [
        f"{amount} {UNITS[name]} needed, {left.get(name, 0)} left"
        for name, amount in wanted.items()
        if amount > left.get(name, 0)
    ]
    if short:
        raise ProviderError(
            "insufficient_resources",
            f"QingCloud zone {client.zone} quota too small: " + "; ".join(short),
        )
    return {name: left.get(name, 0) for name in wanted}
