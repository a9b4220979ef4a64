"""The testcloud provider: a VM cloud plugin, installed the way a third-party package is (an
`openpitrix.providers` entry point), and built only on `openpitrix.providers.base`.

A runtime is a zone of the cloud; a cluster is a set of instances, grouped in roles, named
`<role>-<n>` (the node id). The release's values say what to make:
`{"roles": {"web": {"count": 2, "cpu": 1, "memory": 1024, "volume_size": 10}}}`.

The credential is JSON: `{"cloud": "<path of the cloud's file>", "access_key": ..,
"secret_key": ..}`; its endpoint is the cloud's file URL."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from openpitrix.jobs.plan import PlannedTask
from openpitrix.netguard import AddressPolicy
from openpitrix.providers.base import (
    AddNodesParams,
    Capabilities,
    Change,
    ClusterState,
    Credential,
    CredentialInvalid,
    DeleteNodesParams,
    FieldChange,
    NodeState,
    PlanRequest,
    Preview,
    PreviewRequest,
    PreviewUnsupported,
    Produces,
    Provider,
    ProviderError,
    ResizeParams,
    RoleState,
    TaskKind,
    TaskRun,
    ZoneUnavailable,
)
from openpitrix_testcloud.cloud import PENDING, RUNNING, STOPPED, TERMINATED, Cloud, CloudError

T = TypeVar("T")
SIZES = ("cpu", "memory", "volume_size")
DEFAULTS = {"cpu": 1, "memory": 1024, "volume_size": 10}

PLANS: dict[str, list[list[str]]] = {
    "create": [["render_spec"], ["launch"], ["await_running"], ["survey"]],
    "stop": [["halt"], ["survey"]],
    "start": [["boot"], ["await_running"], ["survey"]],
    "resize": [["reshape"], ["survey"]],
    "add_nodes": [["launch"], ["await_running"], ["survey"]],
    "delete_nodes": [["terminate"], ["survey"]],
    "delete": [["retire"], ["survey"]],
    "recover": [["restore"], ["await_running"], ["survey"]],
    "cease": [["purge"], ["survey"]],
}


class Access:
    """A parsed credential: where the cloud is and the key to it."""

    def __init__(self, credential: Credential) -> None:
        doc = _parse(credential.content)
        self.cloud = Cloud(doc["cloud"])
        self.key = (doc["access_key"], doc["secret_key"])

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One cloud call, off the event loop, with the cloud's refusals as provider errors."""
        try:
            return await asyncio.to_thread(fn, self.key, *args, **kwargs)
        except CloudError as exc:
            if exc.code == "auth_failed":
                raise CredentialInvalid(exc.message) from None
            if exc.code in ("no_such_zone", "zone_taken"):
                raise ZoneUnavailable(exc.code, exc.message) from None
            raise ProviderError(exc.code, exc.message) from None


def _parse(content: str) -> dict[str, str]:
    try:
        doc = json.loads(content)
    except ValueError:
        raise CredentialInvalid("the credential is not JSON") from None
    if not isinstance(doc, dict) or not all(
        isinstance(doc.get(k), str) and doc[k] for k in ("cloud", "access_key", "secret_key")
    ):
        raise CredentialInvalid("the credential needs cloud, access_key and secret_key")
    return doc


def _node_specs(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The nodes a release's values ask for, in role order."""
    roles = values.get("roles")
    if not isinstance(roles, dict) or not roles:
        raise ProviderError("render_failed", "values.roles must name at least one role")
    nodes = []
    for role, spec in roles.items():
        if not isinstance(spec, dict):
            raise ProviderError("render_failed", f"values.roles.{role} must be a table")
        sizes = {k: int(spec.get(k, DEFAULTS[k])) for k in SIZES}
        for n in range(1, int(spec.get("count", 1)) + 1):
            nodes.append({"kind": "Node", "role": role, "name": f"{role}-{n}", **sizes})
    return nodes


def _nodes_of(state: ClusterState, role: str) -> list[NodeState]:
    return [n for n in state.nodes if n.role == role]


def _new_nodes(state: ClusterState, params: AddNodesParams) -> list[dict[str, Any]]:
    """The nodes add-nodes makes: named after the role's highest number, sized like the role's
    first node (planned from the state, so a re-run of the task makes the same ones)."""
    nodes = _nodes_of(state, params.role)
    if not nodes:
        raise ProviderError("no_such_role", f"the cluster has no role {params.role!r}")
    like = nodes[0].model_extra or {}
    sizes = {k: int(like.get(k, DEFAULTS[k])) for k in SIZES}
    top = max(int(n.node_id.rsplit("-", 1)[1]) for n in nodes)
    return [
        {"kind": "Node", "role": params.role, "name": f"{params.role}-{top + i}", **sizes}
        for i in range(1, params.count + 1)
    ]


def survey_of(instances: list[dict[str, Any]]) -> dict[str, Any]:
    """The cluster's roles and nodes as the cloud holds them."""
    roles: dict[str, list[dict[str, Any]]] = {}
    for inst in instances:
        roles.setdefault(inst["role"], []).append(inst)
    state = ClusterState(
        roles=[
            RoleState(
                role=role,
                status=members[0]["status"]
                if len({m["status"] for m in members}) == 1
                else "mixed",
                count=len(members),
            )
            for role, members in roles.items()
        ],
        nodes=[
            NodeState(
                node_id=i["name"],
                role=i["role"],
                instance_id=i["instance_id"],
                private_ip=i["private_ip"],
                status=i["status"],
                **{k: i[k] for k in SIZES},
            )
            for i in instances
        ],
    )
    return state.model_dump(mode="json")


class TestCloudProvider(Provider):
    """A small VM cloud: zones, instances with ids and private IPs, stop/start, resize."""

    __test__ = False  # a provider, not a test class, though its name starts with "Test"
    name: ClassVar[str] = "testcloud"
    capabilities: ClassVar[Capabilities] = Capabilities(
        zone_kind="zone",
        credential_format='JSON: {"cloud": path, "access_key": .., "secret_key": ..}',
        cluster_actions=frozenset(PLANS),
        task_kinds=(
            TaskKind("render_spec", "the release's nodes, from its values", Produces.MANIFEST),
            TaskKind("launch", "run the instances the job makes (found by name if made)"),
            TaskKind("await_running", "wait until every instance runs"),
            TaskKind("halt", "stop every running instance"),
            TaskKind("boot", "start every stopped instance"),
            TaskKind("reshape", "resize the instances of one role"),
            TaskKind("terminate", "remove the named instances for good"),
            TaskKind("retire", "terminate every instance, recoverably"),
            TaskKind("restore", "bring terminated instances back"),
            TaskKind("purge", "remove whatever of the cluster is left"),
            TaskKind("survey", "find the cluster's instances", Produces.STATE),
        ),
    )

    # --- credentials and zones ----------------------------------------------------------------

    def parse_credential(self, content: str, endpoint_url: str) -> Credential:
        doc = _parse(content)
        return Credential(
            provider=self.name,
            endpoint_url=Path(doc["cloud"]).resolve().as_uri(),
            content=content,
        )

    async def validate_credential(self, credential: Credential, policy: AddressPolicy) -> None:
        access = Access(credential)
        await access.call(access.cloud.authenticate)

    async def describe_zones(self, credential: Credential, policy: AddressPolicy) -> list[str]:
        access = Access(credential)
        return await access.call(access.cloud.zones)

    async def claim_zone(
        self,
        credential: Credential,
        zone: str,
        *,
        runtime_id: str,
        create: bool,
        policy: AddressPolicy,
    ) -> None:
        access = Access(credential)
        await access.call(access.cloud.claim_zone, zone, runtime_id, create)

    async def release_zone(
        self, credential: Credential, zone: str, *, runtime_id: str, policy: AddressPolicy
    ) -> None:
        access = Access(credential)
        await access.call(access.cloud.release_zone, zone, runtime_id)

    # --- jobs ---------------------------------------------------------------------------------

    def plan(self, request: PlanRequest) -> list[list[PlannedTask]]:
        layers = PLANS.get(request.action)
        if layers is None:
            raise ProviderError("action_unsupported", f"testcloud has no {request.action}")
        first: dict[str, Any] = {}
        if request.action == "add_nodes":
            params = AddNodesParams.model_validate(request.params)
            first = {"nodes": _new_nodes(request.state, params)}
        elif request.action == "resize":
            resize = ResizeParams.model_validate(request.params)
            if not _nodes_of(request.state, resize.role):
                raise ProviderError("no_such_role", f"the cluster has no role {resize.role!r}")
            first = resize.model_dump(exclude_none=True)
        elif request.action == "delete_nodes":
            first = DeleteNodesParams.model_validate(request.params).model_dump()
        return [
            [PlannedTask(action=name, params=first if i == 0 else {}) for name in layer]
            for i, layer in enumerate(layers)
        ]

    async def run_task(self, run: TaskRun) -> dict[str, Any]:
        access = Access(run.credential)
        cloud = access.cloud
        if run.action == "render_spec":
            return await self._render(run)
        if run.action == "launch":
            return await self._launch(run, access)
        if run.action == "await_running":
            return await self._await_running(run, access)
        if run.action == "survey":
            return survey_of(await access.call(cloud.instances, run.zone, run.cluster_id))
        moves = {
            "halt": ((RUNNING, PENDING), STOPPED),
            "boot": ((STOPPED,), PENDING),
            "retire": ((RUNNING, PENDING, STOPPED), TERMINATED),
            "restore": ((TERMINATED,), PENDING),
        }
        if run.action in moves:
            sources, to = moves[run.action]
            moved = await access.call(
                cloud.set_status, run.zone, run.cluster_id, from_statuses=sources, to=to
            )
            await run.report(f"{moved} instances {to}", None, {"instances": moved})
            return {"instances": moved}
        if run.action == "reshape":
            sizes = {k: run.params[k] for k in SIZES if k in run.params}
            count = await access.call(
                cloud.reshape, run.zone, run.cluster_id, run.params["role"], sizes
            )
            await run.report(f"resized {count} instances of {run.params['role']}", None, sizes)
            return {"instances": count, **sizes}
        if run.action in ("terminate", "purge"):
            names = run.params["node_ids"] if run.action == "terminate" else None
            gone = await access.call(cloud.terminate, run.zone, run.cluster_id, names)
            await run.report(f"removed {gone} instances", None, {"removed": gone})
            return {"removed": gone}
        raise ProviderError("unknown_task", f"testcloud has no task {run.action!r}")

    async def _render(self, run: TaskRun) -> dict[str, Any]:
        if run.release is None:
            raise ProviderError("render_failed", "the job has no release to render")
        # The app's package is fetched as a VM app package would be, and named in the
        # result; the nodes come from the values.
        package = await run.fetch_package()
        nodes = _node_specs(run.release.values)
        await run.report(f"{len(nodes)} nodes to make", None, {"nodes": len(nodes)})
        return {
            "objects": nodes,
            "package_sha256": hashlib.sha256(package).hexdigest(),
        }

    async def _launch(self, run: TaskRun, access: Access) -> dict[str, Any]:
        if "nodes" in run.params:
            nodes = run.params["nodes"]
        elif run.release is not None and run.release.manifest is not None:
            nodes = run.release.manifest
        else:
            raise ProviderError("render_failed", "nothing to launch: the release is not rendered")
        made = 0
        for i, spec in enumerate(nodes, 1):
            instance, new = await access.call(
                access.cloud.run_instance, run.zone, run.cluster_id, spec
            )
            made += new
            verb = "launched" if new else "found"
            await run.report(
                f"{verb} {spec['name']} ({instance['instance_id']}, {instance['private_ip']})",
                100 * i // len(nodes),
                {"node_id": spec["name"], "instance_id": instance["instance_id"]},
            )
        return {"launched": made, "found": len(nodes) - made}

    async def _await_running(self, run: TaskRun, access: Access) -> dict[str, Any]:
        # The cloud boots what is pending; a real one takes a while, this one the next look.
        booted = await access.call(
            access.cloud.set_status,
            run.zone,
            run.cluster_id,
            from_statuses=(PENDING,),
            to=RUNNING,
        )
        instances = await access.call(access.cloud.instances, run.zone, run.cluster_id)
        running = sum(i["status"] == RUNNING for i in instances)
        await run.report(f"{running} instances running", 100, {"booted": booted})
        return {"running": running}

    async def describe_cluster(
        self, credential: Credential, zone: str, cluster_id: str, policy: AddressPolicy
    ) -> dict[str, Any]:
        access = Access(credential)
        return survey_of(await access.call(access.cloud.instances, zone, cluster_id))

    # --- previews -----------------------------------------------------------------------------

    async def preview(self, request: PreviewRequest) -> Preview:
        """Create, resize, add-nodes and delete-nodes list the nodes they would make, resize
        or remove, planned from the cluster's nodes as last found."""
        state = request.state
        if request.action == "create" and request.release is not None:
            changes = [
                Change(kind="create", resource=f"node {n['name']}")
                for n in _node_specs(request.release.values)
            ]
        elif request.action == "add_nodes":
            new = _new_nodes(state, AddNodesParams.model_validate(request.params))
            changes = [Change(kind="create", resource=f"node {n['name']}") for n in new]
        elif request.action == "delete_nodes":
            params = DeleteNodesParams.model_validate(request.params)
            changes = [Change(kind="delete", resource=f"node {n}") for n in params.node_ids]
        elif request.action == "resize":
            resize = ResizeParams.model_validate(request.params)
            changes = []
            for node in _nodes_of(state, resize.role):
                extra = node.model_extra or {}
                diff = [
                    FieldChange(path=k, before=extra.get(k), after=getattr(resize, k))
                    for k in SIZES
                    if getattr(resize, k) is not None and getattr(resize, k) != extra.get(k)
                ]
                changes.append(
                    Change(
                        kind="update" if diff else "unchanged",
                        resource=f"node {node.node_id}",
                        diff=diff,
                    )
                )
        else:
            raise PreviewUnsupported(f"testcloud clusters cannot preview {request.action}")
        return Preview(action=request.action, changes=changes)
