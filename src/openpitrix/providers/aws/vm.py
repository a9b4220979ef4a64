"""AWS EC2 as a VM cloud: the primitives the shared VM provider runs the lifecycle on.

Every instance is tagged `openpitrix:cluster-id`, `openpitrix:role`, `openpitrix:node-id` (and
`Name` = `<cluster_id>-<node_id>`, for the console) and found by those tags. A launch is
`ensure_instance` with a client token derived from the cluster id, the node id and a
generation: the number of the node's terminated instances EC2 still shows, bumped again if AWS
answers a token with an instance that is gone (AWS keeps a token's launch after it ends), so a
node terminated (or lost at launch) is launched anew while a redelivered launch finds its first.

A node's data volume is an EBS volume given at launch (BlockDeviceMappings, on `/dev/sdf`),
tagged like the instance and kept when the instance ends (DeleteOnTermination off, so
`terminate` leaves it and `delete_volumes` deletes it, as the VM base expects). EBS volumes
grow while attached (ModifyVolume), so `detach` is a no-op; `attach` attaches a volume that
is not on its instance (one `create_volume` made), and is a no-op for one that is.

The instance type comes from the role's cpu and memory through the table in
`instance_types` (`instance_class` overrides it); resize changes it while stopped
(ModifyInstanceAttribute). The image is the role's when it is an AMI id (`ami-...`), else the
credential's `image_id`, else the launch fails with `image_required`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Final

from openpitrix.providers.aws.client import AwsClient, InstanceSpec
from openpitrix.providers.aws.errors import AwsError
from openpitrix.providers.aws.instance_types import BY_NAME, FAMILIES, choose_instance_type
from openpitrix.providers.aws.quota import vcpu_room
from openpitrix.providers.aws.results import Instance, StateChange, Volume
from openpitrix.providers.base import ProviderError
from openpitrix.providers.vm.cloud import (
    CloudInstance,
    CloudVolume,
    CommandFailed,
    Needs,
    NodeSpec,
    Progress,
    VmCloud,
)

CLUSTER_TAG: Final = "openpitrix:cluster-id"
ROLE_TAG: Final = "openpitrix:role"
NODE_TAG: Final = "openpitrix:node-id"
CLASS_TAG: Final = "openpitrix:instance-class"
DATA_DEVICE: Final = "/dev/sdf"
BUSY: Final = frozenset({"pending", "stopping", "shutting-down"})
ENDED: Final = ("shutting-down", "terminated")
MAX_GENERATIONS: Final = 8  # launches of one node AWS may answer with a gone instance


def client_token(cluster_id: str, node_id: str, generation: int) -> str:
    """The RunInstances client token of a node's `generation`-th launch (at most 64 chars)."""
    digest = hashlib.sha256(f"{cluster_id}/{node_id}/{generation}".encode()).hexdigest()
    return f"op-{digest[:48]}"


def image_for(node: NodeSpec, default: str | None) -> str:
    if node.image.startswith("ami-"):
        return node.image
    if default:
        return default
    raise ProviderError(
        "image_required",
        f"node {node.node_id}: its role names no AMI (ami-...) and the credential has no "
        "image_id; set one of them",
    )


class AwsVm(VmCloud):
    """One access key in one availability zone."""

    GONE = frozenset({"shutting-down", "terminated"})
    run_command_service = "SSM"

    def __init__(
        self,
        client: AwsClient,
        zone: str,
        *,
        image_id: str | None = None,
        key_name: str | None = None,
        instance_profile: str | None = None,
        wait_timeout: float = 600.0,
        poll_seconds: float = 0.5,
    ) -> None:
        self.client = client
        self.zone = zone
        self.image_id = image_id
        self.key_name = key_name
        self.instance_profile = instance_profile
        self.wait_timeout = wait_timeout
        self.poll_seconds = poll_seconds
        self._sizes: dict[str, tuple[int, int]] = {}
        # The cluster's ended instances by node, looked up once a session (a task).
        self._ended: dict[str, Counter[str]] = {}

    async def close(self) -> None:
        await self.client.aclose()

    # --- finding ------------------------------------------------------------------------------

    async def _size_of(self, instance_types: Collection[str]) -> None:
        unknown = [t for t in instance_types if t not in BY_NAME and t not in self._sizes]
        if unknown:
            self._sizes.update(await self.client.instance_type_sizes(unknown))

    def _instance(self, inst: Instance) -> CloudInstance:
        row = BY_NAME.get(inst.instance_type)
        cpu, memory = (
            (row.vcpus, row.memory) if row else self._sizes.get(inst.instance_type, (0, 0))
        )
        return CloudInstance(
            instance_id=inst.instance_id,
            node_id=inst.tags.get(NODE_TAG, ""),
            role=inst.tags.get(ROLE_TAG, ""),
            status=inst.state,
            private_ip=inst.private_ip,
            cpu=cpu,
            memory=memory,
            busy=inst.state in BUSY,
            volume_ids=tuple(v for d, v in inst.volumes.items() if d == DATA_DEVICE),
        )

    async def _mine(self, cluster_id: str) -> list[Instance]:
        return [
            i
            for i in await self.client.find_instances({CLUSTER_TAG: cluster_id})
            if i.zone == self.zone
        ]

    async def instances(self, cluster_id: str) -> list[CloudInstance]:
        found = await self._mine(cluster_id)
        await self._size_of({i.instance_type for i in found})
        return [self._instance(i) for i in found]

    def _volume(self, volume: Volume) -> CloudVolume:
        attached = next((a for a in volume.attachments if a.state != "detached"), None)
        return CloudVolume(
            volume_id=volume.volume_id,
            node_id=volume.tags.get(NODE_TAG, ""),
            size=volume.size,
            instance_id=attached.instance_id if attached else "",
            status=volume.state,
        )

    async def volumes(self, cluster_id: str) -> list[CloudVolume]:
        # Launch tags every volume it makes, the root one too: the data volume is the one on
        # DATA_DEVICE, or a detached one (a root volume ends with its instance).
        found = await self.client.describe_volumes(tags={CLUSTER_TAG: cluster_id})
        return [
            self._volume(v)
            for v in found
            if v.state not in ("deleting", "deleted")
            and v.zone == self.zone
            and all(a.device == DATA_DEVICE for a in v.attachments)
        ]

    async def check_quota(self, needs: Needs) -> dict[str, int]:
        # Every type of the table has at least 2 vCPUs: a node asking for 1 still takes 2.
        vcpus = max(needs.cpu, 2 * needs.instance)
        room = await vcpu_room(self.client, vcpus=vcpus, instances=needs.instance)
        return {"vcpus" if room.limit.unit == "vCPUs" else "instances": room.left}

    # --- making -------------------------------------------------------------------------------

    def _tags(self, cluster_id: str, node: NodeSpec) -> dict[str, str]:
        tags = {
            "Name": f"{cluster_id}-{node.node_id}",
            CLUSTER_TAG: cluster_id,
            ROLE_TAG: node.role,
            NODE_TAG: node.node_id,
        }
        if node.instance_class not in (None, ""):
            tags[CLASS_TAG] = str(node.instance_class)
        return tags

    async def launch(self, cluster_id: str, node: NodeSpec) -> CloudInstance:
        image = image_for(node, self.image_id)
        instance_type = choose_instance_type(node.cpu, node.memory, node.instance_class)
        if cluster_id not in self._ended:
            found = await self.client.find_instances({CLUSTER_TAG: cluster_id}, states=ENDED)
            self._ended[cluster_id] = Counter(i.tags.get(NODE_TAG, "") for i in found)
        ended = self._ended[cluster_id][node.node_id]
        for generation in range(ended, ended + MAX_GENERATIONS):
            spec = InstanceSpec(
                client_token=client_token(cluster_id, node.node_id, generation),
                image_id=image,
                instance_type=instance_type,
                zone=self.zone,
                tags=self._tags(cluster_id, node),
                user_data=node.user_data,
                volume_size=node.volume_size,
                volume_device=DATA_DEVICE,
                delete_volumes_on_termination=False,
                subnet_id=node.subnet or None,
                key_name=self.key_name,
                instance_profile=self.instance_profile,
            )
            inst, _launched = await self.client.ensure_instance(spec)
            if inst.state not in self.GONE:
                return self._instance(inst)
        raise ProviderError(
            "cloud_error",
            f"AWS answered {MAX_GENERATIONS} launches of {node.node_id} with ended instances",
        )

    async def create_volume(self, cluster_id: str, node_id: str, size: int) -> CloudVolume:
        tags = {"Name": f"{cluster_id}-{node_id}-data", CLUSTER_TAG: cluster_id, NODE_TAG: node_id}
        made = await self.client.create_volume(self.zone, size, tags)
        await self._until_volumes([made.volume_id], {"available"})
        return CloudVolume(
            volume_id=made.volume_id, node_id=node_id, size=made.size, status="available"
        )

    # --- waiting ------------------------------------------------------------------------------

    async def _until(
        self, instance_ids: Sequence[str], states: Collection[str], p: Progress, verb: str
    ) -> None:
        """Poll the instances until each is in one of `states`, telling each one's arrival."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout
        left = set(instance_ids)
        while True:
            found = await self.client.find_instances(
                instance_ids=sorted(left), states=(*states, *BUSY, "running", "stopped")
            )
            for inst in found:
                if inst.state in states and inst.instance_id in left:
                    left.discard(inst.instance_id)
                    await p(f"EC2 instance {inst.instance_id} {verb}")
            seen = {i.instance_id for i in found}
            if "terminated" in states:
                left &= seen  # an instance EC2 no longer lists is gone for good
            if not left:
                return
            if loop.time() > deadline:
                raise ProviderError(
                    "cloud_timeout",
                    f"EC2 instances not {verb} after {self.wait_timeout:.0f}s: "
                    + ", ".join(sorted(left)),
                    retryable=True,
                )
            await asyncio.sleep(self.poll_seconds)

    async def _until_volumes(self, volume_ids: Sequence[str], states: Collection[str]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout
        while True:
            found = await self.client.describe_volumes(volume_ids)
            if all(v.state in states for v in found):
                return
            if loop.time() > deadline:
                raise ProviderError(
                    "cloud_timeout", f"EBS volumes not {'/'.join(states)}", retryable=True
                )
            await asyncio.sleep(self.poll_seconds)

    # --- changing -----------------------------------------------------------------------------

    async def attach(self, volume_ids: Sequence[str], instance_id: str, p: Progress) -> None:
        for volume in await self.client.describe_volumes(volume_ids):
            if any(a.instance_id == instance_id for a in volume.attachments):
                continue  # EBS volumes stay attached while they grow (see `detach`)
            await self.client.attach_volume(volume.volume_id, instance_id, DATA_DEVICE)
            await p(f"EBS volume {volume.volume_id} attaching to {instance_id}")
        await self._until_volumes(volume_ids, {"in-use"})

    async def detach(self, volume_ids: Sequence[str], instance_id: str, p: Progress) -> None:
        """A no-op: EBS grows a volume in use (ModifyVolume), so it stays attached."""

    async def grow_volumes(self, volume_ids: Sequence[str], size: int, p: Progress) -> None:
        for volume_id in volume_ids:
            if await self.client.grow_volume(volume_id, size):
                await p(f"EBS volume {volume_id} growing to {size} GiB")

    async def delete_volumes(self, volume_ids: Sequence[str], p: Progress) -> None:
        for volume in await self.client.describe_volumes(volume_ids):
            if volume.state in ("deleting", "deleted"):
                continue
            await self.client.delete_volume(volume.volume_id)
            await p(f"EBS volume {volume.volume_id} deleted")

    async def _report(self, verb: str, changes: Sequence[StateChange], p: Progress) -> None:
        for c in changes:
            await p(f"EC2 {verb} {c.instance_id}: {c.previous} -> {c.current}")

    async def stop(self, instance_ids: Sequence[str], p: Progress) -> None:
        await self._report("StopInstances", await self.client.stop_instances(instance_ids), p)
        await self._until(instance_ids, {"stopped"}, p, "stopped")

    async def start(self, instance_ids: Sequence[str], p: Progress) -> None:
        await self._report("StartInstances", await self.client.start_instances(instance_ids), p)
        await self._until(instance_ids, {"running"}, p, "running")

    async def resize(
        self,
        instance_ids: Sequence[str],
        *,
        cpu: int | None,
        memory: int | None,
        p: Progress,
    ) -> None:
        found = await self.client.find_instances(instance_ids=instance_ids)
        await self._size_of({i.instance_type for i in found})
        for inst in found:
            now = self._instance(inst)
            klass = inst.tags.get(CLASS_TAG)
            wanted = choose_instance_type(
                cpu if cpu is not None else now.cpu,
                memory if memory is not None else now.memory,
                # A family keeps limiting the choice; a named type is sized away from.
                klass if klass in FAMILIES else None,
            )
            if wanted != inst.instance_type:
                await self.client.modify_instance_type(inst.instance_id, wanted)
                await p(f"EC2 instance {inst.instance_id}: {inst.instance_type} -> {wanted}")

    async def terminate(self, instance_ids: Sequence[str], p: Progress) -> None:
        changes = await self.client.terminate_instances(instance_ids)
        await self._report("TerminateInstances", changes, p)
        await self._until(instance_ids, {"terminated"}, p, "terminated")

    # --- services -----------------------------------------------------------------------------

    async def run_commands(
        self, instance_ids: Sequence[str], script: str, *, timeout_seconds: int, p: Progress
    ) -> None:
        """SendCommand (AWS-RunShellScript) to the instances, then GetCommandInvocation each
        until it ends. The instances need the SSM agent (Amazon Linux and Ubuntu AMIs have it)
        and an instance profile allowing SSM (the credential's `instance_profile`)."""
        command_id = await self.client.send_command(
            instance_ids, [script], timeout_seconds=timeout_seconds, comment="openpitrix service"
        )
        await p(f"SSM command {command_id} sent to {len(instance_ids)} instances")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds + 60  # SSM's own timeout ends it before this
        pending = list(instance_ids)
        while pending:
            for instance_id in list(pending):
                try:
                    run = await self.client.get_command_invocation(command_id, instance_id)
                except AwsError as exc:
                    if exc.aws_code == "InvocationDoesNotExist":
                        continue  # not registered yet, right after SendCommand
                    raise
                if not run.done:
                    continue
                pending.remove(instance_id)
                if run.status != "Success":
                    raise CommandFailed(
                        [instance_id],
                        f"SSM command {command_id} on {instance_id}: {run.status} "
                        f"(exit {run.response_code}): {run.stderr[-500:] or run.stdout[-500:]}",
                    )
            if pending:
                if loop.time() > deadline:
                    raise CommandFailed(
                        pending,
                        f"SSM command {command_id} not ended after {timeout_seconds}s on "
                        f"{', '.join(pending)}",
                    )
                await asyncio.sleep(self.poll_seconds)
        await p(f"SSM command {command_id} succeeded on {len(instance_ids)} instances")
