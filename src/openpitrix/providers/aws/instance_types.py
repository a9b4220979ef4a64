"""Which EC2 instance type a VM role gets: the smallest general-purpose type that fits.

A role asks for `cpu` (vCPUs) and `memory` (MiB). The type is the first row of `TABLE`, in its
order (fewest vCPUs, then least memory, the burstable t3 before m5 where both fit: it costs less),
with at least that many vCPUs and that much memory. A role's `instance_class` overrides the
table: an EC2 type name (`c5.xlarge`) is used as it is, a family of the table (`m5`) limits the
choice to that family. OpenPitrix's QingCloud classes (numbers: 0, 1, 101, ...) mean nothing on
AWS and are ignored. GPUs are not in the table: a role that wants one names its type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from openpitrix.providers.base import ProviderError


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory: int  # MiB

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]


def _row(name: str, vcpus: int, gib: float) -> InstanceType:
    return InstanceType(name, vcpus, int(gib * 1024))


TABLE: Final[tuple[InstanceType, ...]] = (
    _row("t3.nano", 2, 0.5),
    _row("t3.micro", 2, 1),
    _row("t3.small", 2, 2),
    _row("t3.medium", 2, 4),
    _row("t3.large", 2, 8),
    _row("m5.large", 2, 8),
    _row("t3.xlarge", 4, 16),
    _row("m5.xlarge", 4, 16),
    _row("t3.2xlarge", 8, 32),
    _row("m5.2xlarge", 8, 32),
    _row("m5.4xlarge", 16, 64),
    _row("m5.8xlarge", 32, 128),
    _row("m5.12xlarge", 48, 192),
    _row("m5.16xlarge", 64, 256),
    _row("m5.24xlarge", 96, 384),
)
BY_NAME: Final = {row.name: row for row in TABLE}
FAMILIES: Final = frozenset(row.family for row in TABLE)
TYPE_NAME: Final = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")


def choose_instance_type(cpu: int, memory: int, instance_class: str | int | None = None) -> str:
    """The instance type for a role of `cpu` vCPUs and `memory` MiB (see the module docstring);
    ProviderError("instance_type_unavailable") when no row fits."""
    wanted = str(instance_class).strip() if instance_class is not None else ""
    if TYPE_NAME.match(wanted):
        return wanted
    rows = [row for row in TABLE if row.family == wanted] if wanted in FAMILIES else list(TABLE)
    for row in rows:
        if row.vcpus >= cpu and row.memory >= memory:
            return row.name
    within = f" of family {wanted}" if wanted in FAMILIES else ""
    raise ProviderError(
        "instance_type_unavailable",
        f"no general-purpose EC2 type{within} has {cpu} vCPUs and {memory} MiB; "
        "name one as the role's instance_class",
    )


def table_markdown() -> str:
    """The table as the README prints it."""
    lines = ["| instance type | vCPUs | memory (MiB) |", "| --- | ---: | ---: |"]
    lines += [f"| {row.name} | {row.vcpus} | {row.memory} |" for row in TABLE]
    return "\n".join(lines)
