"""The shared VM provider: plans, tasks and previews every VM cloud has in common, on a cloud's
primitives (`VmCloud`), so a cloud plugin implements only those, its credentials and zones.

A cluster is a set of instances named `<cluster_id>-<role>-<n>` (the node id is `<role>-<n>`),
each with at most one data volume named `<cluster_id>-<role>-<n>-data`. Tasks find what they
make by those names before making it, so a redelivered task converges.

What each action does in the cloud:
- create: render the package into nodes, check quotas, launch, wait until running, make and
  attach volumes, survey.
- stop / start: stop or start the instances (start waits until they run).
- resize (one role): stop the role's running instances, resize cpu/memory, grow volumes
  (detached while they grow), start again the ones that ran.
- add_nodes: as create, for the new nodes only (sized like the role's nodes now).
- delete_nodes: terminate the nodes' instances and delete their volumes.
- delete: stop every instance and keep it with its volume (the cluster's `deleted` status is
  the mark); recover starts them again. cease terminates every instance and deletes every
  volume.
Services after boot: the `services` task runs the deployed package's `stop` service before
stop, delete, cease (every running node) and delete_nodes (the leaving nodes); then, for
delete_nodes, `scale_in` on the other running nodes of each role losing nodes, before they go;
and, for add_nodes, `scale_out` on the role's other running nodes once the new ones run (as
QingCloud AppCenter runs them: on the nodes that stay). Each runs role by role in its `order`,
with its `timeout`, through the cloud's `run_commands` (AWS: SSM); a cloud without a
run-command service reports each as not run ("cannot run ... no run-command service") and the
job goes on. A service that fails, or does not end within its timeout, on a node fails the
task and so the job, with the reason `command_failed` naming the service, its role and command
and the nodes it failed on. The action's later tasks do not run: a failed stop, delete or cease
leaves every instance as it was (running) and the cluster in its status (the lock released);
a failed delete_nodes keeps every node. Retrying the job runs the services again, so services
must bear running twice. `restart` is never run by a lifecycle action; `init` and `start` run
at first boot (the user data), `destroy` never.
upgrade, update_env and rollback are not declared for VM clusters: a running instance cannot
take a new package without an agent.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from openpitrix.jobs.plan import PlannedTask
from openpitrix.netguard import AddressPolicy
from openpitrix.providers.base import (
    AddNodesParams,
    Change,
    ClusterState,
    Credential,
    DeleteNodesParams,
    FieldChange,
    PlanRequest,
    Preview,
    PreviewRequest,
    PreviewUnsupported,
    Produces,
    Provider,
    ProviderError,
    Release,
    ResizeParams,
    TaskKind,
    TaskRun,
)
from openpitrix.providers.vm.cloud import (
    COMMAND_FAILED,
    CloudInstance,
    CommandFailed,
    Needs,
    NodeSpec,
    VmCloud,
)
from openpitrix.providers.vm.nodes import (
    added_nodes,
    new_node_ids,
    node_number,
    nodes_of_spec,
    rendered,
    state_nodes,
    survey_of,
    user_data,
)
from openpitrix.providers.vm.redact import hide, redact_objects, redact_settings, secrets_of

PLANS: dict[str, list[list[str]]] = {
    "create": [
        ["render_spec"],
        ["check"],
        ["launch"],
        ["await_running"],
        ["attach_volumes"],
        ["survey"],
    ],
    "stop": [["services"], ["stop"], ["survey"]],
    "start": [["start"], ["await_running"], ["survey"]],
    "resize": [["resize"], ["survey"]],
    "add_nodes": [
        ["check"],
        ["launch"],
        ["await_running"],
        ["attach_volumes"],
        ["services"],
        ["survey"],
    ],
    "delete_nodes": [["services"], ["terminate"], ["survey"]],
    "delete": [["services"], ["stop"], ["survey"]],
    "recover": [["start"], ["await_running"], ["survey"]],
    "cease": [["services"], ["terminate"], ["survey"]],
    "refresh": [["survey"]],
}

# The package services each action's `services` task runs, in this order (see `_services`).
SERVICES: dict[str, tuple[str, ...]] = {
    "stop": ("stop",),
    "delete": ("stop",),
    "cease": ("stop",),
    "add_nodes": ("scale_out",),
    "delete_nodes": ("stop", "scale_in"),
}
DEFAULT_SERVICE_TIMEOUT = 600  # seconds, for a service that names no timeout

VM_TASK_KINDS: tuple[TaskKind, ...] = (
    TaskKind("render_spec", "render the VM package into the nodes to make", Produces.MANIFEST),
    TaskKind("check", "check the zone's quotas can hold the nodes to make"),
    TaskKind("launch", "launch the nodes' instances (found by name if made)"),
    TaskKind("await_running", "wait until every instance runs"),
    TaskKind("attach_volumes", "make and attach the nodes' data volumes"),
    TaskKind("stop", "stop the running instances"),
    TaskKind("start", "start the stopped instances"),
    TaskKind("resize", "stop, resize and grow one role's nodes, then start them again"),
    TaskKind("terminate", "terminate instances and delete their volumes"),
    TaskKind("services", "run the package's services for the action on running instances"),
    TaskKind("survey", "find the cluster's instances", Produces.STATE),
)


class VmProvider(Provider):
    """A VM cloud's provider: implement `open_cloud` (and the credential and zone methods);
    the lifecycle is here."""

    package_kind: ClassVar[str] = "vm"
    redacts_values = True
    poll_seconds: ClassVar[float] = 0.5  # how often await_running looks at the instances

    @abstractmethod
    def open_cloud(self, credential: Credential, zone: str, policy: AddressPolicy) -> VmCloud:
        """A session with the cloud for one task (closed after it)."""

    # --- showing ------------------------------------------------------------------------------

    def redact_manifest(self, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The nodes with the values of the package's password settings hidden wherever the
        template rendered them (env, service commands, any text)."""
        return redact_objects(objects)

    def redact_values(
        self, values: dict[str, Any], objects: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The settings with the password settings' values hidden (every text setting while
        the release is not rendered yet)."""
        return redact_settings(values, objects)

    # --- planning -----------------------------------------------------------------------------

    def plan(self, request: PlanRequest) -> list[list[PlannedTask]]:
        layers = PLANS.get(request.action)
        if layers is None:
            raise ProviderError("action_unsupported", f"{self.name} has no {request.action}")
        params: dict[str, Any] = {}
        if request.action == "add_nodes":
            add = AddNodesParams.model_validate(request.params)
            params = {"role": add.role, "node_ids": new_node_ids(request.state, add)}
        elif request.action == "resize":
            resize = ResizeParams.model_validate(request.params)
            if not state_nodes(request.state, resize.role):
                raise ProviderError("no_such_role", f"the cluster has no role {resize.role!r}")
            params = resize.model_dump(exclude_none=True)
        elif request.action == "delete_nodes":
            params = DeleteNodesParams.model_validate(request.params).model_dump()
        elif request.action == "cease":
            params = {"all": True}

        # Every task but the survey acts on the same nodes: each gets the action's parameters
        # (the services task also the services it runs).
        def params_of(name: str) -> dict[str, Any]:
            if name == "survey":
                return {}
            if name == "services":
                return {**params, "services": list(SERVICES[request.action])}
            return params

        return [
            [PlannedTask(action=name, params=params_of(name)) for name in layer] for layer in layers
        ]

    # --- running ------------------------------------------------------------------------------

    async def run_task(self, run: TaskRun) -> dict[str, Any]:
        if run.action == "render_spec":
            return await self._render(run)
        cloud = self.open_cloud(run.credential, run.zone, run.policy)
        try:
            return await self._run(run, cloud)
        finally:
            await cloud.close()

    async def check_resources(self, run: TaskRun) -> dict[str, Any]:
        cloud = self.open_cloud(run.credential, run.zone, run.policy)
        try:
            return await self._check(run, cloud)
        finally:
            await cloud.close()

    async def _run(self, run: TaskRun, cloud: VmCloud) -> dict[str, Any]:
        async def progress(message: str) -> None:
            await run.report(message, None, {})

        if run.action == "check":
            return await self._check(run, cloud)
        if run.action == "launch":
            return await self._launch(run, cloud)
        if run.action == "await_running":
            return await self._await_running(run, cloud)
        if run.action == "attach_volumes":
            return await self._attach_volumes(run, cloud)
        if run.action == "survey":
            return await self._survey(cloud, run.cluster_id)
        if run.action == "stop":
            found = await cloud.instances(run.cluster_id)
            ids = [i.instance_id for i in found if i.status == "running"]
            if ids:
                await cloud.stop(ids, progress)
            await run.report(f"{len(ids)} instances stopped", 100, {"stopped": len(ids)})
            return {"stopped": len(ids)}
        if run.action == "start":
            found = await cloud.instances(run.cluster_id)
            ids = [i.instance_id for i in found if i.status == "stopped"]
            if ids:
                await cloud.start(ids, progress)
            await run.report(f"{len(ids)} instances started", 100, {"started": len(ids)})
            return {"started": len(ids)}
        if run.action == "resize":
            return await self._resize(run, cloud)
        if run.action == "terminate":
            return await self._terminate(run, cloud)
        if run.action == "services":
            return await self._services(run, cloud)
        raise ProviderError("unknown_task", f"{self.name} has no task {run.action!r}")

    async def _render(self, run: TaskRun) -> dict[str, Any]:
        if run.release is None:
            raise ProviderError("render_failed", "the job has no release to render")
        version, spec, secrets = await rendered(await run.fetch_package(), run.release.values)
        objects = nodes_of_spec(spec, secrets)
        await run.report(f"{len(objects)} nodes to make", None, {"nodes": len(objects)})
        return {"objects": objects, "chart_version": version}

    def _wanted(self, run: TaskRun) -> list[dict[str, Any]]:
        """The manifest objects of the nodes this job makes: the release's (create), or the
        new nodes of a role, specified like the role's nodes in the deployed release and
        sized like them now (add_nodes)."""
        if "node_ids" in run.params and "role" in run.params:
            deployed = run.previous or (run.history[-1] if run.history else None)
            return added_nodes(deployed, run.state, run.params["role"], run.params["node_ids"])
        if run.release is None or run.release.manifest is None:
            raise ProviderError("render_failed", "nothing to launch: the release is not rendered")
        return run.release.manifest

    async def _check(self, run: TaskRun, cloud: VmCloud) -> dict[str, Any]:
        wanted = self._wanted(run)
        made = {i.node_id for i in await cloud.instances(run.cluster_id)}
        todo = [o for o in wanted if o["node_id"] not in made]
        needs = needs_of(todo)
        left = await cloud.check_quota(needs)
        await run.report(f"quotas hold {len(todo)} new nodes", 100, {"left": left})
        return {"left": left, "nodes": len(todo)}

    async def _launch(self, run: TaskRun, cloud: VmCloud) -> dict[str, Any]:
        """Launch the nodes the cloud does not list yet, each once however often the task runs.

        A node is found by its name (or tag) before it is launched. That is enough where the
        cloud lists what it accepted at once, or dedupes by a token (AWS). A cloud that
        `lists_launches_late` (QingCloud: a RunInstances answered with a job id, the instance
        listed only once that job starts) leaves a window where a run resumed after its worker
        died finds nothing by name for a launch the dead run sent, and would send it again. So
        there, before each launch is sent the node is kept in the task's checkpoint (durably)
        as sent, and once answered with the cloud's handle on it (the job id); a run that finds
        kept launches unlisted waits for them (`await_launches`: the known jobs, or, for a
        launch sent with no answer seen, every launch of the zone still pending) and looks
        again, launching only what is still missing (a launch that failed in the cloud is
        made anew). Each run also waits for its own launches to be listed before it ends, so
        await_running never takes a launch in flight for a lost instance."""

        async def progress(message: str) -> None:
            await run.report(message, None, {})

        wanted = self._wanted(run)
        tracked = cloud.lists_launches_late
        kept: dict[str, str] = dict(run.checkpoint.get("launches") or {}) if tracked else {}
        found = {i.node_id: i for i in await cloud.instances(run.cluster_id)}
        unlisted = sorted(node for node in kept if node not in found)
        if unlisted:
            await run.report(
                f"waiting for launches sent before: {', '.join(unlisted)}",
                None,
                {"node_ids": unlisted},
            )
            await cloud.await_launches([kept[node] for node in unlisted], progress)
            found = {i.node_id: i for i in await cloud.instances(run.cluster_id)}
        sent: list[str] = []
        launched = 0
        for n, obj in enumerate(wanted, 1):
            node_id = obj["node_id"]
            inst = found.get(node_id)
            verb = "found"
            if inst is None:
                if tracked:
                    kept[node_id] = ""  # sent, not answered yet
                    await run.keep({"launches": dict(kept)})
                inst = await cloud.launch(run.cluster_id, NodeSpec.of(obj, user_data(obj)))
                if tracked:
                    kept[node_id] = inst.launch
                    await run.keep({"launches": dict(kept)})
                    sent.append(inst.launch)
                launched += 1
                verb = "launched"
            await run.report(
                f"{verb} {node_id} ({inst.instance_id})",
                100 * n // len(wanted),
                {"node_id": node_id, "instance_id": inst.instance_id},
            )
        if sent:
            await cloud.await_launches(sent, progress)
        return {"launched": launched, "found": len(wanted) - launched}

    async def _await_running(self, run: TaskRun, cloud: VmCloud) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + run.timeout_seconds
        told: set[str] = set()
        # The nodes this job made (create, add_nodes) must all be there: an instance whose
        # launch failed in the cloud is gone, not pending.
        making = "node_ids" in run.params or (
            run.release is not None and run.release.manifest is not None
        )
        wanted = {o["node_id"] for o in self._wanted(run)} if making else set()
        while True:
            found = await cloud.instances(run.cluster_id)
            lost = sorted(wanted - {i.node_id for i in found})
            if lost:
                raise ProviderError(
                    "instance_lost",
                    f"the cloud has no instance of {', '.join(lost)}: its launch failed "
                    "or it was removed; run the action again to launch it anew",
                )
            for inst in found:
                if inst.status == "running" and not inst.busy and inst.node_id not in told:
                    told.add(inst.node_id)
                    await run.report(
                        f"{inst.node_id} running at {inst.private_ip}",
                        100 * len(told) // max(len(found), 1),
                        {"node_id": inst.node_id, "private_ip": inst.private_ip},
                    )
            waiting = [i.node_id for i in found if i.status != "running" or i.busy]
            if not waiting:
                return {"running": len(found)}
            if loop.time() > deadline:
                raise ProviderError(
                    "instances_not_running",
                    f"not running after {run.timeout_seconds:.0f}s: {', '.join(waiting)}",
                    retryable=True,
                )
            await asyncio.sleep(self.poll_seconds)

    async def _attach_volumes(self, run: TaskRun, cloud: VmCloud) -> dict[str, Any]:
        wanted = [o for o in self._wanted(run) if int(o.get("volume_size") or 0) > 0]
        instances = {i.node_id: i for i in await cloud.instances(run.cluster_id)}
        volumes = {v.node_id: v for v in await cloud.volumes(run.cluster_id)}
        attached = 0
        for n, obj in enumerate(wanted, 1):
            node_id = obj["node_id"]
            inst = instances.get(node_id)
            if inst is None:
                raise ProviderError("node_missing", f"node {node_id} has no instance to attach to")
            volume = volumes.get(node_id)
            if volume is None:
                volume = await cloud.create_volume(run.cluster_id, node_id, int(obj["volume_size"]))
            if volume.instance_id != inst.instance_id:

                async def progress(message: str, node: str = node_id) -> None:
                    await run.report(f"{node}: {message}", None, {"node_id": node})

                await cloud.attach([volume.volume_id], inst.instance_id, progress)
                attached += 1
            await run.report(
                f"volume {node_id}/data ({volume.volume_id}, {volume.size} GiB) attached",
                100 * n // len(wanted),
                {"node_id": node_id, "volume_id": volume.volume_id},
            )
        return {"attached": attached, "volumes": len(wanted)}

    async def _resize(self, run: TaskRun, cloud: VmCloud) -> dict[str, Any]:
        params = ResizeParams.model_validate(run.params)

        async def progress(message: str) -> None:
            await run.report(f"{params.role}: {message}", None, {"role": params.role})

        members = [i for i in await cloud.instances(run.cluster_id) if i.role == params.role]
        if not members:
            raise ProviderError("no_such_role", f"the cluster has no role {params.role!r}")
        ids = [i.instance_id for i in members]
        volumes = [v for v in await cloud.volumes(run.cluster_id) if v.instance_id in ids]
        if params.volume_size is not None:
            smaller = [v for v in volumes if v.size > params.volume_size]
            if smaller:
                raise ProviderError(
                    "volume_shrink",
                    f"volumes only grow: {smaller[0].node_id} has {smaller[0].size} GiB, "
                    f"{params.volume_size} GiB asked",
                )
        # The nodes to run again at the end: those running now, and those the state (found
        # before this job) shows running, so a redelivered resize that finds the role already
        # stopped by its first run still starts them again.
        before = {n.node_id for n in run.state.nodes if n.status == "running"}
        running = [i.instance_id for i in members if i.status == "running"]
        restart = [i.instance_id for i in members if i.status == "running" or i.node_id in before]
        if running:
            await cloud.stop(running, progress)
        sizing = params.cpu is not None or params.memory is not None
        if sizing:
            await cloud.resize(ids, cpu=params.cpu, memory=params.memory, p=progress)
        grow = [v for v in volumes if params.volume_size and v.size < params.volume_size]
        for volume in grow:
            await cloud.detach([volume.volume_id], volume.instance_id, progress)
        if grow and params.volume_size is not None:
            await cloud.grow_volumes([v.volume_id for v in grow], params.volume_size, progress)
        for volume in grow:
            await cloud.attach([volume.volume_id], volume.instance_id, progress)
        if restart:
            await cloud.start(restart, progress)
            await self._await_running(run, cloud)
        sizes = params.model_dump(exclude_none=True, exclude={"role"})
        await run.report(f"resized {len(ids)} nodes of {params.role}", 100, sizes)
        return {"nodes": len(ids), **sizes}

    async def _terminate(self, run: TaskRun, cloud: VmCloud) -> dict[str, Any]:
        async def progress(message: str) -> None:
            await run.report(message, None, {})

        found = await cloud.instances(run.cluster_id)
        volumes = await cloud.volumes(run.cluster_id)
        if run.params.get("all"):
            names = {i.node_id for i in found} | {v.node_id for v in volumes}
        else:
            names = set(DeleteNodesParams.model_validate(run.params).node_ids)
        doomed = [i.instance_id for i in found if i.node_id in names]
        if doomed:
            await cloud.terminate(doomed, progress)
        # Terminating detaches the volumes; they are deleted with the node.
        gone = [v.volume_id for v in await cloud.volumes(run.cluster_id) if v.node_id in names]
        if gone:
            await cloud.delete_volumes(gone, progress)
        await run.report(
            f"removed {len(doomed)} instances and {len(gone)} volumes",
            100,
            {"instances": len(doomed), "volumes": len(gone)},
        )
        return {"instances": len(doomed), "volumes": len(gone)}

    async def _services(self, run: TaskRun, cloud: VmCloud) -> dict[str, Any]:
        """Run the deployed package's services for the action on the running instances, each
        service role by role in its `order`, with its `timeout`:
        - stop: on the nodes leaving (delete_nodes), else on every node (stop, delete, cease);
        - scale_out: on the added role's other nodes, once the new ones run (add_nodes);
        - scale_in: on the other nodes of each role losing nodes, before they go (delete_nodes).
        restart, init, start and destroy are not run here (init and start run at first boot).
        A cloud with no run-command service runs none: each is reported as not run. A
        redelivered task runs the commands again: services must bear running twice."""
        deployed = _deployed(run)
        by_role = services_by_role(deployed)
        secrets = secrets_of(deployed.manifest or []) if deployed is not None else []
        named = set(run.params.get("node_ids") or [])
        found = await cloud.instances(run.cluster_id)
        running = [i for i in found if i.status == "running" and not i.busy]
        steps: list[tuple[int, str, str, dict[str, Any], list[CloudInstance]]] = []
        for name in run.params.get("services") or []:
            for role, services in sorted(by_role.items()):
                service = services.get(name) or {}
                if not service.get("cmd"):
                    continue
                members = [i for i in running if i.role == role]
                losing = any(n.rsplit("-", 1)[0] == role for n in named)
                if name == "stop":
                    if named and not losing:
                        continue  # delete_nodes: only the roles losing nodes stop any
                    targets = [i for i in members if not named or i.node_id in named]
                elif name == "scale_out":
                    if role != run.params.get("role"):
                        continue
                    targets = [i for i in members if i.node_id not in named]
                elif name == "scale_in":
                    if not losing:
                        continue
                    targets = [i for i in members if i.node_id not in named]
                else:
                    continue
                targets.sort(key=lambda i: node_number(i.node_id))
                steps.append((int(service.get("order") or 0), name, role, service, targets))
        ran = 0
        # Each service in the action's order, and within one service its roles by `order`.
        names = list(run.params.get("services") or [])
        steps.sort(key=lambda s: (names.index(s[1]), s[0], s[2]))
        for _order, name, role, service, targets in steps:
            if not cloud.run_command_service:
                await run.report(
                    f"cannot run {name} of {role} on {self.name}: no run-command service",
                    None,
                    {"service": name, "role": role, "ran": False},
                )
                continue
            if not targets:
                await run.report(
                    f"no running nodes of {role} to run {name} on",
                    None,
                    {"service": name, "role": role, "ran": False},
                )
                continue

            async def progress(message: str, service_name: str = name, r: str = role) -> None:
                await run.report(f"{r} {service_name}: {message}", None, {"role": r})

            timeout = int(service.get("timeout") or DEFAULT_SERVICE_TIMEOUT)
            script = service_script(name, role, str(service["cmd"]))
            ids = [i.instance_id for i in targets]
            try:
                await cloud.run_commands(ids, script, timeout_seconds=timeout, p=progress)
            except CommandFailed as exc:
                raise _command_failed(exc, name, role, service, targets, secrets) from None
            ran += 1
            nodes = [i.node_id for i in targets]
            await run.report(
                f"ran {name} of {role} on {', '.join(nodes)} through {cloud.run_command_service}",
                None,
                {"service": name, "role": role, "ran": True, "nodes": nodes, "instances": ids},
            )
        await run.report(f"{ran} services run", 100, {"ran": ran, "steps": len(steps)})
        return {"ran": ran, "skipped": len(steps) - ran}

    async def _survey(self, cloud: VmCloud, cluster_id: str) -> dict[str, Any]:
        instances = await cloud.instances(cluster_id)
        volumes = {v.node_id: v.size for v in await cloud.volumes(cluster_id)}
        return survey_of(instances, volumes)

    async def describe_cluster(
        self, credential: Credential, zone: str, cluster_id: str, policy: AddressPolicy
    ) -> dict[str, Any]:
        cloud = self.open_cloud(credential, zone, policy)
        try:
            return await self._survey(cloud, cluster_id)
        finally:
            await cloud.close()

    async def _check_preview(
        self, request: PreviewRequest, objects: Sequence[dict[str, Any]]
    ) -> None:
        cloud = self.open_cloud(request.credential, request.zone, request.policy)
        try:
            await cloud.check_quota(needs_of(objects))
        finally:
            await cloud.close()

    # --- previews -----------------------------------------------------------------------------

    async def preview(self, request: PreviewRequest) -> Preview:
        """Create, add-nodes, delete-nodes and resize list the nodes and volumes they would
        make, change or remove, planned from the package and the cluster's nodes as last
        found; create and add-nodes also check the zone's quotas, as their check task would."""
        state = request.state
        changes: list[Change] = []
        if request.action == "create" and request.release is not None:
            _, spec, secrets = await rendered(await request.fetch_package(), request.release.values)
            objects = nodes_of_spec(spec, secrets)
            await self._check_preview(request, objects)
            changes = _creates(objects)
        elif request.action == "add_nodes":
            add = AddNodesParams.model_validate(request.params)
            ids = new_node_ids(state, add)
            deployed = request.deployed or (request.history[-1] if request.history else None)
            objects = added_nodes(deployed, state, add.role, ids)
            await self._check_preview(request, objects)
            changes = _creates(objects)
        elif request.action == "delete_nodes":
            params = DeleteNodesParams.model_validate(request.params)
            by_id = {n.node_id: n for n in state.nodes}
            for node_id in params.node_ids:
                changes.append(Change(kind="delete", resource=f"node {node_id}"))
                node = by_id.get(node_id)
                if node is not None and (node.model_extra or {}).get("volume_size"):
                    changes.append(Change(kind="delete", resource=f"volume {node_id}/data"))
        elif request.action == "resize":
            changes = _resizes(state, ResizeParams.model_validate(request.params))
        else:
            raise PreviewUnsupported(f"{self.name} clusters cannot preview {request.action}")
        return Preview(action=request.action, changes=changes)


def _deployed(run: TaskRun) -> Release | None:
    """The release the cluster runs now: the one before this job's, else the last rendered."""
    for release in (run.previous, *reversed(run.history), run.release):
        if release is not None and release.manifest:
            return release
    return None


def _command_failed(
    exc: CommandFailed,
    name: str,
    role: str,
    service: dict[str, Any],
    targets: Sequence[CloudInstance],
    secrets: Sequence[str],
) -> ProviderError:
    """The job's reason for a service that failed: the service, its role and command, the
    nodes it failed on, and what the cloud said (password settings' values hidden)."""
    failed = [i for i in targets if i.instance_id in exc.instance_ids]
    nodes = ", ".join(f"{i.node_id} ({i.instance_id})" for i in failed) or "its nodes"
    cmd = hide(str(service.get("cmd", "")), secrets)
    return ProviderError(
        COMMAND_FAILED,
        f"{name} of {role} failed on {nodes}: `{cmd}`: {hide(exc.message, secrets)}",
    )


def services_by_role(release: Release | None) -> dict[str, dict[str, Any]]:
    """Each role's services in a release's manifest (its nodes carry their role's)."""
    found: dict[str, dict[str, Any]] = {}
    for obj in release.manifest if release is not None and release.manifest else []:
        found.setdefault(str(obj.get("role")), dict(obj.get("services") or {}))
    return found


def service_script(name: str, role: str, cmd: str) -> str:
    """The shell script a service runs as on a node."""
    return f"#!/bin/sh\nset -e\n# OpenPitrix VM service {name} of {role}\n{cmd}\n"


def needs_of(objects: Sequence[dict[str, Any]]) -> Needs:
    """What making these nodes adds to the account."""
    with_volume = [o for o in objects if int(o.get("volume_size") or 0) > 0]
    return Needs(
        instance=len(objects),
        cpu=sum(int(o.get("cpu") or 1) for o in objects),
        memory=sum(int(o.get("memory") or 1024) for o in objects),
        volume=len(with_volume),
        volume_size=sum(int(o["volume_size"]) for o in with_volume),
    )


def _creates(objects: Sequence[dict[str, Any]]) -> list[Change]:
    changes = []
    for obj in objects:
        changes.append(Change(kind="create", resource=f"node {obj['node_id']}"))
        if int(obj.get("volume_size") or 0) > 0:
            changes.append(Change(kind="create", resource=f"volume {obj['node_id']}/data"))
    return changes


def _resizes(state: ClusterState, resize: ResizeParams) -> list[Change]:
    changes = []
    for node in state_nodes(state, resize.role):
        extra = node.model_extra or {}
        diff = [
            FieldChange(path=k, before=extra.get(k), after=getattr(resize, k))
            for k in ("cpu", "memory")
            if getattr(resize, k) is not None and getattr(resize, k) != extra.get(k)
        ]
        changes.append(
            Change(
                kind="update" if diff else "unchanged",
                resource=f"node {node.node_id}",
                diff=diff,
            )
        )
        size = resize.volume_size
        if size is not None and size != extra.get("volume_size"):
            changes.append(
                Change(
                    kind="update" if extra.get("volume_size") else "create",
                    resource=f"volume {node.node_id}/data",
                    diff=[FieldChange(path="size", before=extra.get("volume_size"), after=size)],
                )
            )
    return changes
