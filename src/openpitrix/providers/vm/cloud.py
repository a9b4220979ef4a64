"""What a VM cloud gives the shared VM provider: its primitives, and the shapes they speak in.

A cloud plugin (QingCloud, AWS) implements `VmCloud` for one credential and zone; every
mutating primitive waits for the cloud's own asynchronous work to end (reporting through the
`Progress` it is given) and raises ProviderError with the cloud's code and message."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from openpitrix.providers.base import ProviderError

# A message about the cloud's work on a resource (a job's status), for the task's progress.
Progress = Callable[[str], Awaitable[None]]

COMMAND_FAILED = "command_failed"


class CommandFailed(ProviderError):
    """A command run after boot failed (or did not end in time) on these instances; the VM
    base names the nodes, role and service in the job's reason."""

    def __init__(self, instance_ids: Sequence[str], message: str) -> None:
        super().__init__(COMMAND_FAILED, message)
        self.instance_ids = tuple(instance_ids)


@dataclass(frozen=True)
class NodeSpec:
    """One node to make: a role's machine, sized and booted as the release asks."""

    node_id: str  # "<role>-<n>"
    role: str
    cpu: int
    memory: int  # MiB
    gpu: int = 0
    instance_class: int | str | None = None
    volume_size: int = 0  # GiB of the node's data volume, 0 for none
    image: str = ""  # the cloud's image id; "" for the cloud's default
    subnet: str = ""  # the cloud's network id; "" for the cloud's default
    user_data: str = ""  # a script run once at first boot

    @classmethod
    def of(cls, obj: dict[str, Any], user_data: str = "") -> NodeSpec:
        return cls(
            node_id=str(obj["node_id"]),
            role=str(obj["role"]),
            cpu=int(obj.get("cpu") or 1),
            memory=int(obj.get("memory") or 1024),
            gpu=int(obj.get("gpu") or 0),
            instance_class=obj.get("instance_class"),
            volume_size=int(obj.get("volume_size") or 0),
            image=str(obj.get("image") or ""),
            subnet=str(obj.get("subnet") or ""),
            user_data=user_data,
        )


@dataclass(frozen=True)
class CloudVolume:
    volume_id: str
    node_id: str
    size: int  # GiB
    instance_id: str = ""  # the instance it is attached to, "" if none
    status: str = ""


@dataclass(frozen=True)
class CloudInstance:
    """One of a cluster's instances as the cloud shows it."""

    instance_id: str
    node_id: str
    role: str
    status: str  # pending, running, stopped, terminated, ... (the cloud's words)
    private_ip: str = ""
    cpu: int = 0
    memory: int = 0
    busy: bool = False  # in a transition (starting, stopping, ...)
    volume_ids: tuple[str, ...] = field(default=())
    # The cloud's handle on the request that made it (QingCloud: the RunInstances job id), set
    # by `launch` for `await_launches`; "" when the cloud gives none.
    launch: str = ""


@dataclass(frozen=True)
class Needs:
    """What a deploy would add to the account."""

    instance: int = 0
    cpu: int = 0
    memory: int = 0  # MiB
    volume: int = 0
    volume_size: int = 0  # GiB


class VmCloud(ABC):
    """One credential in one zone of a VM cloud. Instances and volumes are found by the
    cluster id and node id they are named (or tagged) with, so every primitive that makes
    something can be asked again after a crash without making it twice."""

    # Statuses that mean the instance is gone (not listed, and remade if asked for again).
    GONE: frozenset[str] = frozenset({"terminated", "ceased", "deleted"})

    @abstractmethod
    async def instances(self, cluster_id: str) -> list[CloudInstance]:
        """The cluster's instances that are not gone."""

    @abstractmethod
    async def volumes(self, cluster_id: str) -> list[CloudVolume]:
        """The cluster's data volumes that are not deleted."""

    @abstractmethod
    async def check_quota(self, needs: Needs) -> dict[str, int]:
        """What is left of the quotas `needs` touches; ProviderError("insufficient_resources")
        naming what is short."""

    @abstractmethod
    async def launch(self, cluster_id: str, node: NodeSpec) -> CloudInstance:
        """Start making the node's instance, named (or tagged) for the cluster and node; does
        not wait for it to run (await_running polls `instances`)."""

    # True for a cloud that may accept a launch before `instances` lists it (QingCloud lists
    # an instance once its RunInstances job starts) and that has no idempotency token: the VM
    # base then keeps every launch it sends in the task's checkpoint and waits on them
    # (`await_launches`) before it looks for a node by name again.
    lists_launches_late: ClassVar[bool] = False

    async def await_launches(self, launches: Sequence[str], p: Progress) -> None:  # noqa: B027
        """Wait until the instances of these launches are listed by `instances`, or never
        will be (the launch failed). `launches` are `CloudInstance.launch` handles, and ""
        for a launch sent whose answer never came (its worker died waiting). Only a cloud
        that `lists_launches_late` needs it; the others list what they accepted at once."""

    @abstractmethod
    async def create_volume(self, cluster_id: str, node_id: str, size: int) -> CloudVolume:
        """Make the node's data volume of `size` GiB (or more: the cloud's step), and wait."""

    @abstractmethod
    async def attach(self, volume_ids: Sequence[str], instance_id: str, p: Progress) -> None: ...

    @abstractmethod
    async def detach(self, volume_ids: Sequence[str], instance_id: str, p: Progress) -> None: ...

    @abstractmethod
    async def grow_volumes(self, volume_ids: Sequence[str], size: int, p: Progress) -> None:
        """Grow detached volumes to `size` GiB."""

    @abstractmethod
    async def delete_volumes(self, volume_ids: Sequence[str], p: Progress) -> None:
        """Delete detached volumes."""

    @abstractmethod
    async def stop(self, instance_ids: Sequence[str], p: Progress) -> None: ...

    @abstractmethod
    async def start(self, instance_ids: Sequence[str], p: Progress) -> None: ...

    @abstractmethod
    async def resize(
        self,
        instance_ids: Sequence[str],
        *,
        cpu: int | None,
        memory: int | None,
        p: Progress,
    ) -> None:
        """Resize stopped instances (cpu in vCPUs, memory in MiB; None keeps it)."""

    @abstractmethod
    async def terminate(self, instance_ids: Sequence[str], p: Progress) -> None:
        """Remove instances for good (their volumes are detached, not deleted)."""

    # The cloud's service that runs commands on running instances after boot (AWS: "SSM");
    # "" for none, and then `run_commands` is not implemented and the VM base skips services.
    run_command_service: ClassVar[str] = ""

    async def run_commands(
        self, instance_ids: Sequence[str], script: str, *, timeout_seconds: int, p: Progress
    ) -> None:
        """Run a shell script on running instances and wait until it ends on every one;
        CommandFailed naming the instances where it failed (or timed out), its message the
        cloud's status, exit code and output. Optional: only a cloud naming a
        `run_command_service` implements it."""
        raise ProviderError(
            "run_command_unsupported", "this cloud has no service that runs commands"
        )

    async def close(self) -> None:  # noqa: B027  optional: nothing kept by default
        """Release the connection this cloud session holds."""
