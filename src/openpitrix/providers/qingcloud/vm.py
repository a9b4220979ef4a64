"""QingCloud as a VM cloud: the primitives the shared VM provider runs the lifecycle on.

Instances are named `<cluster_id>-<node_id>` and volumes `<cluster_id>-<node_id>-data`
(QingCloud's RunInstances has no client token, and the API's tags are separate resources, so
the name is what a re-run finds); both are found with DescribeInstances/DescribeVolumes
`search_word`, then matched on the exact prefix. Every change is a QingCloud job, waited for
with its status changes reported as progress.

A name does not cover a launch in flight: RunInstances answers with a job id at once, but an
instance is listed only once that job has started, so a launch task resumed after its worker
died could find nothing by name for a RunInstances the dead worker sent. The VM base keeps each
launch (this job id, or "" while unanswered) in the task's checkpoint before it waits, and a
resumed run waits here for those jobs to start (`await_launches`) before looking again."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from dataclasses import asdict
from typing import Final

from openpitrix.providers.base import ProviderError
from openpitrix.providers.qingcloud import quota
from openpitrix.providers.qingcloud.client import QingCloudClient
from openpitrix.providers.qingcloud.results import Instance, Job, JobStatus, UserData
from openpitrix.providers.vm.cloud import (
    CloudInstance,
    CloudVolume,
    Needs,
    NodeSpec,
    Progress,
    VmCloud,
)

DEFAULT_IMAGE: Final = "centos7x64d"  # QingCloud's CentOS 7 64-bit, in every zone
DEFAULT_VXNET: Final = "vxnet-0"  # QingCloud's basic network
VOLUME_STEP: Final = 10  # QingCloud volumes come in multiples of 10 GiB
BUSY: Final = frozenset({"creating", "starting", "stopping", "restarting", "resizing"})


def volume_size(size: int) -> int:
    """The QingCloud volume size for `size` GiB: a multiple of 10, at least 10."""
    return max(VOLUME_STEP, -(-size // VOLUME_STEP) * VOLUME_STEP)


class QingCloudVm(VmCloud):
    """One access key in one zone."""

    GONE = frozenset({"terminated", "ceased"})

    def __init__(
        self,
        client: QingCloudClient,
        *,
        image_id: str = DEFAULT_IMAGE,
        login_keypair: str | None = None,
        job_timeout: float = 600.0,
        poll_seconds: float = 0.5,
    ) -> None:
        self.client = client
        self.image_id = image_id
        self.login_keypair = login_keypair
        self.job_timeout = job_timeout
        self.poll_seconds = poll_seconds

    async def close(self) -> None:
        await self.client.aclose()

    async def _wait(self, job_id: str, p: Progress) -> None:
        async def on_progress(job: Job) -> None:
            await p(f"QingCloud {job.job_action} {job.job_id} {job.status}")

        await self.client.wait_job(
            job_id,
            timeout=self.job_timeout,
            interval=self.poll_seconds,
            max_interval=max(self.poll_seconds, 5.0),
            on_progress=on_progress,
        )

    # --- finding ------------------------------------------------------------------------------

    def _instance(self, prefix: str, inst: Instance) -> CloudInstance:
        node_id = inst.instance_name.removeprefix(prefix)
        return CloudInstance(
            instance_id=inst.instance_id,
            node_id=node_id,
            role=node_id.rsplit("-", 1)[0],
            status=inst.status,
            private_ip=inst.private_ip,
            cpu=inst.vcpus_current,
            memory=inst.memory_current,
            busy=inst.transition_status in BUSY,
            volume_ids=tuple(inst.volume_ids),
        )

    async def instances(self, cluster_id: str) -> list[CloudInstance]:
        prefix = f"{cluster_id}-"
        found = await self.client.describe_instances(search_word=prefix)
        return [
            self._instance(prefix, i)
            for i in found
            if i.instance_name.startswith(prefix) and i.status not in self.GONE
        ]

    async def volumes(self, cluster_id: str) -> list[CloudVolume]:
        prefix = f"{cluster_id}-"
        found = await self.client.describe_volumes(search_word=prefix)
        return [
            CloudVolume(
                volume_id=v.volume_id,
                node_id=v.volume_name.removeprefix(prefix).removesuffix("-data"),
                size=v.size,
                instance_id=v.instance_id,
                status=v.status,
            )
            for v in found
            if v.volume_name.startswith(prefix)
            and v.volume_name.endswith("-data")
            and v.status not in ("deleted", "ceased")
        ]

    async def check_quota(self, needs: Needs) -> dict[str, int]:
        return await quota.check_quota(self.client, quota.Needs(**asdict(needs)))

    # --- making -------------------------------------------------------------------------------

    async def launch(self, cluster_id: str, node: NodeSpec) -> CloudInstance:
        name = f"{cluster_id}-{node.node_id}"
        sizing: dict[str, int | str | None] = {"cpu": node.cpu, "memory": node.memory}
        klass = node.instance_class
        if isinstance(klass, str) and klass and not klass.isdigit():
            sizing = {"instance_type": klass}  # a QingCloud instance type, c2m4 ...
        elif klass not in (None, ""):
            sizing["instance_class"] = int(klass)
        # No keypair: a password nobody keeps, so nobody logs in by password.
        password = None if self.login_keypair else f"Op{secrets.token_urlsafe(12)}9a"
        accepted = await self.client.run_instances(
            image_id=node.image or self.image_id,
            instance_type=_str(sizing.get("instance_type")),
            instance_class=_int(sizing.get("instance_class")),
            cpu=_int(sizing.get("cpu")),
            memory=_int(sizing.get("memory")),
            instance_name=name,
            hostname=node.node_id.replace("_", "-").lower(),  # a hostname has no "_"
            vxnets=[node.subnet or DEFAULT_VXNET],
            user_data=UserData(node.user_data) if node.user_data else None,
            login_mode="keypair" if self.login_keypair else "passwd",
            login_keypair=self.login_keypair,
            login_passwd=password,
        )
        return CloudInstance(
            instance_id=accepted.ids[0],
            node_id=node.node_id,
            role=node.role,
            status="pending",
            busy=True,
            launch=accepted.job_id,
        )

    lists_launches_late = True

    async def await_launches(self, launches: Sequence[str], p: Progress) -> None:
        """Wait until the RunInstances jobs of these launches have left `pending` (started:
        their instances are listed; or ended: failed ones made nothing to find). A launch
        with no job id was sent by a worker that died before the answer: it is one of the
        zone's RunInstances jobs still pending, if QingCloud took it at all, so those are
        waited for too (other clusters' launches among them only cost the wait). A request
        still on the wire when this looks is not covered; a task is resumed only after the
        bus's ack wait has passed, long after a dead worker's last request arrived."""
        waiting = {job for job in launches if job}
        if not all(launches):
            pending = await self.client.find_jobs(action="RunInstances", status=[JobStatus.PENDING])
            waiting |= {job.job_id for job in pending}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.job_timeout
        delay = self.poll_seconds
        while waiting:
            jobs = await self.client.find_jobs(sorted(waiting))
            # A job QingCloud no longer knows has nothing left to wait for.
            waiting &= {job.job_id for job in jobs if job.status == JobStatus.PENDING}
            for job in jobs:
                if job.job_id not in waiting:
                    await p(f"QingCloud {job.job_action} {job.job_id} {job.status}")
            if not waiting:
                return
            if loop.time() > deadline:
                raise ProviderError(
                    "launch_not_started",
                    f"QingCloud RunInstances jobs still pending after {self.job_timeout:.0f}s: "
                    f"{', '.join(sorted(waiting))}",
                    retryable=True,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, max(self.poll_seconds, 5.0))

    async def create_volume(self, cluster_id: str, node_id: str, size: int) -> CloudVolume:
        accepted = await self.client.create_volumes(
            size=volume_size(size), volume_name=f"{cluster_id}-{node_id}-data"
        )
        await self.client.wait_job(
            accepted.job_id, timeout=self.job_timeout, interval=self.poll_seconds
        )
        return CloudVolume(
            volume_id=accepted.ids[0], node_id=node_id, size=volume_size(size), status="available"
        )

    # --- changing -----------------------------------------------------------------------------

    async def attach(self, volume_ids: Sequence[str], instance_id: str, p: Progress) -> None:
        await self._wait(await self.client.attach_volumes(volume_ids, instance_id), p)

    async def detach(self, volume_ids: Sequence[str], instance_id: str, p: Progress) -> None:
        await self._wait(await self.client.detach_volumes(volume_ids, instance_id), p)

    async def grow_volumes(self, volume_ids: Sequence[str], size: int, p: Progress) -> None:
        await self._wait(await self.client.resize_volumes(volume_ids, volume_size(size)), p)

    async def delete_volumes(self, volume_ids: Sequence[str], p: Progress) -> None:
        await self._wait(await self.client.delete_volumes(volume_ids), p)

    async def stop(self, instance_ids: Sequence[str], p: Progress) -> None:
        await self._wait(await self.client.stop_instances(instance_ids), p)

    async def start(self, instance_ids: Sequence[str], p: Progress) -> None:
        await self._wait(await self.client.start_instances(instance_ids), p)

    async def resize(
        self,
        instance_ids: Sequence[str],
        *,
        cpu: int | None,
        memory: int | None,
        p: Progress,
    ) -> None:
        job = await self.client.resize_instances(instance_ids, cpu=cpu, memory=memory)
        await self._wait(job, p)

    async def terminate(self, instance_ids: Sequence[str], p: Progress) -> None:
        await self._wait(await self.client.terminate_instances(instance_ids), p)


def _int(value: int | str | None) -> int | None:
    return int(value) if value is not None else None


def _str(value: int | str | None) -> str | None:
    return str(value) if value is not None else None
