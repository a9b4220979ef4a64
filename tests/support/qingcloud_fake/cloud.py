"""The fake QingCloud's state and actions: every change goes through a job that runs on the
fake's event loop, pending -> working -> successful (or failed, when a test asks).

An instance is listed late, as QingCloud's asynchronous job model lets it be: RunInstances
answers at once with the new instance ids and a job id, but the instances appear in
DescribeInstances (by name, by id, or in any action naming them) only once that job has
started (left `pending`); DescribeJobs knows the job from the start. A launch task that looks
for its instances by name in between finds nothing. The window is `job_delay` long unless a
test holds the jobs of an action in `pending` (`held_jobs`), to show it for as long as it likes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import threading
from collections.abc import Callable
from typing import Any

from tests.support.qingcloud_fake.resources import (
    CPUS,
    DEFAULT_QUOTA,
    INSTANCE_TYPES,
    MEMORIES,
    FakeInstance,
    FakeJob,
    FakeVolume,
    move,
    new_id,
    now_text,
    page,
)
from tests.support.qingcloud_fake.wire import ApiError, denied, invalid, not_found, snake

Step = Callable[[], None]  # a change a job makes to the state, run under the lock


class Cloud:
    """One account's resources in the fake. Callers hold `lock` around `handle`; jobs take it
    when they change things."""

    def __init__(
        self, *, zones: tuple[str, ...], images: tuple[str, ...], job_delay: float
    ) -> None:
        self.zones = zones
        self.images = set(images)
        self.keypairs = {"kp-fake0001"}
        self.vxnets = {"vxnet-0"}
        self.job_delay = job_delay
        self.quota = dict(DEFAULT_QUOTA)
        self.lock = threading.Lock()
        self.paused = False
        self.held_jobs: set[str] = set()  # actions whose jobs stay pending while named here
        self.failing_jobs: dict[str, int] = {}
        self.instances: dict[str, FakeInstance] = {}
        self.volumes: dict[str, FakeVolume] = {}
        self.jobs: dict[str, FakeJob] = {}
        self._next_ip = 2
        self._tasks: set[asyncio.Task[None]] = set()

    def handle(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run a checked action (under the lock, on the fake's loop)."""
        result: dict[str, Any] = getattr(self, f"_do_{snake(action)}")(args)
        return result

    def cancel_jobs(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    # --------------------------------------------------------------------------- jobs

    def _start_job(
        self, action: str, ids: list[str], zone: str, working: Step, done: Step, failed: Step
    ) -> str:
        """A job (called under the lock): `working` runs when it starts, then `done` (or
        `failed`, if the test asked for failing jobs) when it ends."""
        job = FakeJob(new_id("j-"), action, ids, zone)
        self.jobs[job.job_id] = job
        fails = self.failing_jobs.get(action, 0) > 0
        if fails:
            self.failing_jobs[action] -= 1

        async def step() -> None:
            await asyncio.sleep(self.job_delay)
            while self.paused:
                await asyncio.sleep(0.01)

        async def run() -> None:
            await step()
            while action in self.held_jobs:
                job.held = True
                await asyncio.sleep(0.01)
            job.held = False
            with self.lock:
                job.status, job.status_time = "working", now_text()
                working()
            await step()
            with self.lock:
                (failed if fails else done)()
                job.status = "failed" if fails else "successful"
                job.status_time = now_text()

        # Handlers run on the fake's loop (uvicorn calls us there).
        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job.job_id

    # ---------------------------------------------------------------------- quotas, zones

    def _usage(self) -> dict[str, int]:
        live = [i for i in self.instances.values() if i.status not in ("terminated", "ceased")]
        kept = [v for v in self.volumes.values() if v.status not in ("deleted", "ceased")]
        return {
            "instance": len(live),
            "cpu": sum(i.vcpus for i in live),
            "memory": sum(i.memory for i in live),
            "volume": len(kept),
            "volume_size": sum(v.size for v in kept),
        }

    def _check_quota(self, wanted: dict[str, int]) -> None:
        usage = self._usage()
        for resource, amount in wanted.items():
            left = self.quota[resource] - usage[resource]
            if amount > left:
                raise ApiError(
                    2500,
                    f"QuotaExceeded, the quota of [{resource}] left is [{left}], "
                    f"but [{amount}] is needed",
                )

    def _do_describe_zones(self, args: dict[str, Any]) -> dict[str, Any]:
        wanted = args.get("zones") or list(self.zones)
        zones = [{"zone_id": z, "status": "active"} for z in self.zones if z in wanted]
        return {"zone_set": zones, "total_count": len(zones)}

    def _do_get_quota_left(self, args: dict[str, Any]) -> dict[str, Any]:
        usage = self._usage()
        types = args.get("resource_types") or list(self.quota)
        for name in types:
            if name not in self.quota:
                raise invalid(f"resource type [{name}] is not valid")
        left = [{"resource_type": t, "left": self.quota[t] - usage[t]} for t in types]
        return {"quota_left_set": left}

    # -------------------------------------------------------------------------- instances

    def _instance(self, ident: str, zone: str) -> FakeInstance:
        found = self.instances.get(ident)
        if found is None or found.zone != zone or not found.listed:
            raise not_found("instance", ident)
        return found

    def _do_run_instances(self, args: dict[str, Any]) -> dict[str, Any]:
        zone = args["zone"]
        if args["image_id"] not in self.images:
            raise not_found("image", args["image_id"])
        if "instance_type" in args:
            if args["instance_type"] not in INSTANCE_TYPES:
                raise invalid(f"instance_type [{args['instance_type']}] is not valid")
            cpu, memory = INSTANCE_TYPES[args["instance_type"]]
        elif "cpu" in args and "memory" in args:
            cpu, memory = args["cpu"], args["memory"]
            if cpu not in CPUS or memory not in MEMORIES:
                raise invalid(f"cpu [{cpu}] / memory [{memory}] is not a valid combination")
        else:
            raise invalid("either instance_type or cpu and memory should be given")
        mode = args["login_mode"]
        if mode == "keypair":
            if args.get("login_keypair") not in self.keypairs:
                raise not_found("keypair", args.get("login_keypair", ""))
        elif mode == "passwd":
            if len(args.get("login_passwd", "")) < 8:
                raise invalid("login_passwd should have at least 8 characters")
        else:
            raise invalid(f"login_mode [{mode}] is not valid")
        vxnets = args.get("vxnets") or ["vxnet-0"]
        for vxnet in vxnets:
            if vxnet not in self.vxnets:
                raise not_found("vxnet", vxnet)
        count = args.get("count", 1)
        if not 1 <= count <= 100:
            raise invalid(f"count [{count}] should be between 1 and 100")
        userdata_type, userdata = self._userdata(args)
        self._check_quota({"instance": count, "cpu": cpu * count, "memory": memory * count})
        made = [
            FakeInstance(
                instance_id=new_id("i-"),
                instance_name=args.get("instance_name", ""),
                image_id=args["image_id"],
                instance_type=args.get("instance_type", f"c{cpu}m{memory // 1024}"),
                vcpus=cpu,
                memory=memory,
                zone=zone,
                vxnet_id=vxnets[0],
                userdata_type=userdata_type,
                userdata=userdata,
                listed=False,
            )
            for _ in range(count)
        ]
        for instance in made:
            self.instances[instance.instance_id] = instance

        def done() -> None:
            for instance in made:
                instance.private_ip = f"192.168.0.{self._next_ip}"
                self._next_ip += 1
                move(instance, "running")

        def failed() -> None:
            for instance in made:
                move(instance, "terminated")

        def working() -> None:
            for instance in made:
                instance.listed = True

        ids = [i.instance_id for i in made]
        job_id = self._start_job("RunInstances", ids, zone, working, done, failed)
        return {"instances": ids, "job_id": job_id}

    def _userdata(self, args: dict[str, Any]) -> tuple[str, str]:
        names = ("userdata_type", "userdata_value", "userdata_path")
        if args.get("need_userdata", 0) != 1:
            if any(args.get(name) for name in names):
                raise invalid("userdata is given but need_userdata is not 1")
            return "", ""
        kind = args.get("userdata_type", "")
        if kind not in ("plain", "exec", "tar"):
            raise invalid(f"userdata_type [{kind}] is not valid")
        value = args.get("userdata_value", "")
        if kind == "tar":
            return kind, value  # an attachment id
        try:
            text = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise invalid("userdata_value should be base64 encoded") from None
        if kind == "exec" and not text.startswith("#!"):
            raise invalid("userdata of type exec should start with #!")
        return kind, text

    def _do_describe_instances(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("tags"):
            raise invalid("the fake does not keep tags")
        found = [i for i in self.instances.values() if i.zone == args["zone"] and i.listed]
        if "instances" in args:
            found = [i for i in found if i.instance_id in args["instances"]]
        if "status" in args:
            found = [i for i in found if i.status in args["status"]]
        if "search_word" in args:
            word = args["search_word"]
            found = [i for i in found if word in i.instance_id or word in i.instance_name]
        shown = page(found, args)
        return {"instance_set": [i.as_json() for i in shown], "total_count": len(found)}

    def _instance_job(
        self,
        action: str,
        args: dict[str, Any],
        *,
        from_status: tuple[str, ...],
        transition: str,
        to_status: str,
        effect: Callable[[FakeInstance], None] = lambda _: None,
    ) -> dict[str, Any]:
        instances = [self._instance(ident, args["zone"]) for ident in args["instances"]]
        for instance in instances:
            if instance.status not in from_status or instance.transition_status:
                raise denied(
                    f"instance [{instance.instance_id}] is [{instance.status}"
                    f"{'/' + instance.transition_status if instance.transition_status else ''}]"
                    f", {action} needs {'/'.join(from_status)}"
                )
        before = {i.instance_id: i.status for i in instances}
        for instance in instances:
            instance.transition_status = transition

        def done() -> None:
            for instance in instances:
                effect(instance)
                move(instance, to_status)

        def failed() -> None:
            for instance in instances:
                move(instance, before[instance.instance_id])

        ids = [i.instance_id for i in instances]
        job_id = self._start_job(action, ids, args["zone"], lambda: None, done, failed)
        return {"job_id": job_id}

    def _do_stop_instances(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("force", 0) not in (0, 1):
            raise invalid("force should be 0 or 1")
        return self._instance_job(
            "StopInstances",
            args,
            from_status=("running",),
            transition="stopping",
            to_status="stopped",
        )

    def _do_start_instances(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._instance_job(
            "StartInstances",
            args,
            from_status=("stopped",),
            transition="starting",
            to_status="running",
        )

    def _do_restart_instances(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._instance_job(
            "RestartInstances",
            args,
            from_status=("running",),
            transition="restarting",
            to_status="running",
        )

    def _do_resize_instances(self, args: dict[str, Any]) -> dict[str, Any]:
        if "instance_type" in args:
            if args["instance_type"] not in INSTANCE_TYPES:
                raise invalid(f"instance_type [{args['instance_type']}] is not valid")
            cpu, memory = INSTANCE_TYPES[args["instance_type"]]
        elif "cpu" in args or "memory" in args:
            cpu, memory = args.get("cpu"), args.get("memory")
            if (cpu is not None and cpu not in CPUS) or (
                memory is not None and memory not in MEMORIES
            ):
                raise invalid(f"cpu [{cpu}] / memory [{memory}] is not valid")
        else:
            raise invalid("either instance_type or cpu/memory should be given")
        instances = [self._instance(ident, args["zone"]) for ident in args["instances"]]
        grow_cpu = sum(max((cpu or i.vcpus) - i.vcpus, 0) for i in instances)
        grow_memory = sum(max((memory or i.memory) - i.memory, 0) for i in instances)
        self._check_quota({"cpu": grow_cpu, "memory": grow_memory})

        def resize(instance: FakeInstance) -> None:
            instance.vcpus = cpu or instance.vcpus
            instance.memory = memory or instance.memory
            instance.instance_type = args.get(
                "instance_type", f"c{instance.vcpus}m{instance.memory // 1024}"
            )

        return self._instance_job(
            "ResizeInstances",
            args,
            from_status=("stopped",),
            transition="resizing",
            to_status="stopped",
            effect=resize,
        )

    def _do_terminate_instances(self, args: dict[str, Any]) -> dict[str, Any]:
        def detach(instance: FakeInstance) -> None:
            for volume_id in instance.volume_ids:
                volume = self.volumes[volume_id]
                volume.instance_id = ""
                move(volume, "available")
            instance.volume_ids.clear()
            instance.private_ip = ""

        return self._instance_job(
            "TerminateInstances",
            args,
            from_status=("pending", "running", "stopped", "suspended"),
            transition="terminating",
            to_status="terminated",
            effect=detach,
        )

    # ----------------------------------------------------------------------------- volumes

    def _volume(self, ident: str, zone: str) -> FakeVolume:
        found = self.volumes.get(ident)
        if found is None or found.zone != zone or found.status in ("deleted", "ceased"):
            raise not_found("volume", ident)
        return found

    def _volume_json(self, volume: FakeVolume) -> dict[str, Any]:
        attached: dict[str, Any] = {}
        if volume.instance_id:
            instance = self.instances[volume.instance_id]
            device = f"/dev/vd{chr(ord('b') + instance.volume_ids.index(volume.volume_id))}"
            attached = {
                "instance_id": instance.instance_id,
                "instance_name": instance.instance_name,
                "device": device,
            }
        return {
            "volume_id": volume.volume_id,
            "volume_name": volume.volume_name,
            "size": volume.size,
            "volume_type": volume.volume_type,
            "status": volume.status,
            "transition_status": volume.transition_status,
            "instance": attached,
            "zone_id": volume.zone,
            "create_time": volume.create_time,
            "status_time": volume.status_time,
        }

    def _do_create_volumes(self, args: dict[str, Any]) -> dict[str, Any]:
        size, count = args["size"], args.get("count", 1)
        if size < 10 or size % 10:
            raise invalid(f"size [{size}] should be a multiple of 10, at least 10")
        if args.get("volume_type", 0) not in (0, 1, 2, 3, 5, 6):
            raise invalid(f"volume_type [{args['volume_type']}] is not valid")
        if not 1 <= count <= 100:
            raise invalid(f"count [{count}] should be between 1 and 100")
        self._check_quota({"volume": count, "volume_size": size * count})
        made = [
            FakeVolume(
                volume_id=new_id("vol-"),
                volume_name=args.get("volume_name", ""),
                size=size,
                volume_type=args.get("volume_type", 0),
                zone=args["zone"],
            )
            for _ in range(count)
        ]
        for volume in made:
            self.volumes[volume.volume_id] = volume

        def done() -> None:
            for volume in made:
                move(volume, "available")

        def failed() -> None:
            for volume in made:
                move(volume, "deleted")

        ids = [v.volume_id for v in made]
        job_id = self._start_job("CreateVolumes", ids, args["zone"], lambda: None, done, failed)
        return {"volumes": ids, "job_id": job_id}

    def _do_describe_volumes(self, args: dict[str, Any]) -> dict[str, Any]:
        found = [v for v in self.volumes.values() if v.zone == args["zone"]]
        if "volumes" in args:
            found = [v for v in found if v.volume_id in args["volumes"]]
        if "instance_id" in args:
            found = [v for v in found if v.instance_id == args["instance_id"]]
        if "status" in args:
            found = [v for v in found if v.status in args["status"]]
        if "search_word" in args:
            word = args["search_word"]
            found = [v for v in found if word in v.volume_id or word in v.volume_name]
        shown = page(found, args)
        return {"volume_set": [self._volume_json(v) for v in shown], "total_count": len(found)}

    def _volume_job(
        self,
        action: str,
        volumes: list[FakeVolume],
        zone: str,
        *,
        transition: str,
        done: Callable[[FakeVolume], None],
    ) -> dict[str, Any]:
        for volume in volumes:
            if volume.transition_status:
                raise denied(f"volume [{volume.volume_id}] is [{volume.transition_status}]")
        before = {v.volume_id: v.status for v in volumes}
        for volume in volumes:
            volume.transition_status = transition

        def finish() -> None:
            for volume in volumes:
                done(volume)

        def failed() -> None:
            for volume in volumes:
                move(volume, before[volume.volume_id])

        ids = [v.volume_id for v in volumes]
        return {"job_id": self._start_job(action, ids, zone, lambda: None, finish, failed)}

    def _do_attach_volumes(self, args: dict[str, Any]) -> dict[str, Any]:
        instance = self._instance(args["instance"], args["zone"])
        if instance.status not in ("running", "stopped") or instance.transition_status:
            raise denied(f"instance [{instance.instance_id}] is [{instance.status}]")
        volumes = [self._volume(ident, args["zone"]) for ident in args["volumes"]]
        for volume in volumes:
            if volume.status != "available":
                raise denied(f"volume [{volume.volume_id}] is [{volume.status}], not available")

        def attach(volume: FakeVolume) -> None:
            volume.instance_id = instance.instance_id
            instance.volume_ids.append(volume.volume_id)
            move(volume, "in-use")

        return self._volume_job(
            "AttachVolumes", volumes, args["zone"], transition="attaching", done=attach
        )

    def _do_detach_volumes(self, args: dict[str, Any]) -> dict[str, Any]:
        instance = self._instance(args["instance"], args["zone"])
        volumes = [self._volume(ident, args["zone"]) for ident in args["volumes"]]
        for volume in volumes:
            if volume.instance_id != instance.instance_id:
                raise denied(
                    f"volume [{volume.volume_id}] is not attached to [{instance.instance_id}]"
                )

        def detach(volume: FakeVolume) -> None:
            volume.instance_id = ""
            instance.volume_ids.remove(volume.volume_id)
            move(volume, "available")

        return self._volume_job(
            "DetachVolumes", volumes, args["zone"], transition="detaching", done=detach
        )

    def _do_resize_volumes(self, args: dict[str, Any]) -> dict[str, Any]:
        volumes = [self._volume(ident, args["zone"]) for ident in args["volumes"]]
        size = args["size"]
        for volume in volumes:
            if volume.status != "available":
                raise denied(f"volume [{volume.volume_id}] should be detached to resize")
            if size <= volume.size or size % 10:
                raise invalid(f"size [{size}] should be a larger multiple of 10")
        self._check_quota({"volume_size": sum(size - v.size for v in volumes)})

        def grow(volume: FakeVolume) -> None:
            volume.size = size
            move(volume, "available")

        return self._volume_job(
            "ResizeVolumes", volumes, args["zone"], transition="resizing", done=grow
        )

    def _do_delete_volumes(self, args: dict[str, Any]) -> dict[str, Any]:
        volumes = [self._volume(ident, args["zone"]) for ident in args["volumes"]]
        for volume in volumes:
            if volume.status != "available":
                raise denied(f"volume [{volume.volume_id}] is [{volume.status}], detach it first")
        return self._volume_job(
            "DeleteVolumes",
            volumes,
            args["zone"],
            transition="deleting",
            done=lambda volume: move(volume, "deleted"),
        )

    # -------------------------------------------------------------------------------- jobs

    def _do_describe_jobs(self, args: dict[str, Any]) -> dict[str, Any]:
        found = [j for j in self.jobs.values() if j.zone == args["zone"]]
        if "jobs" in args:
            found = [j for j in found if j.job_id in args["jobs"]]
        if "status" in args:
            found = [j for j in found if j.status in args["status"]]
        if "job_action" in args:
            found = [j for j in found if j.job_action == args["job_action"]]
        shown = page(found, args)
        return {"job_set": [j.as_json() for j in shown], "total_count": len(found)}
