"""A VM cluster's nodes: the manifest objects a package renders to, each node's first-boot
script, the node ids add-nodes makes, and the state a cloud's instances survey to."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Sequence
from typing import Any

from openpitrix.errors import AppError
from openpitrix.providers.base import (
    AddNodesParams,
    ClusterState,
    NodeState,
    ProviderError,
    Release,
    RoleState,
)
from openpitrix.providers.vm.cloud import CloudInstance
from openpitrix.providers.vm.config import secret_values
from openpitrix.providers.vm.package import (
    ClusterSpec,
    Role,
    load_package,
    render_cluster,
    settings_for,
)

DEFAULT_ROLE = "node"


async def rendered(data: bytes, conf: Any) -> tuple[str, ClusterSpec, list[str]]:
    """The package's version, the spec it renders with `conf`, and the values of its
    `password` settings (for `nodes_of_spec`), in a thread."""

    def render() -> tuple[str, ClusterSpec, list[str]]:
        package = load_package(data)
        spec = render_cluster(package, conf)
        secrets = secret_values(package.config, settings_for(package, conf))
        return package.meta.version, spec, secrets

    try:
        return await asyncio.to_thread(render)
    except AppError as exc:
        raise ProviderError(exc.code, exc.message) from None


def role_name(role: Role) -> str:
    return role.role or DEFAULT_ROLE


def image_of(role: Role) -> str:
    """A role's image: `container.image` unless the container is a docker image (which runs
    on the cloud's default image); "" for the default."""
    if role.container.type.lower() == "docker":
        return ""
    return role.container.image


def nodes_of_spec(spec: ClusterSpec, secrets: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The manifest objects of a rendered spec: one per node, in role order. Each keeps the
    values of the package's `password` settings (`secrets`) as rendered, so that the API can
    hide them wherever they were rendered to (`redact.redact_objects`) while the nodes a
    later add-nodes makes still boot with them."""
    objects = []
    for role in spec.nodes:
        name = role_name(role)
        mount = role.volume.mount_point
        for n in range(1, role.count + 1):
            objects.append(
                {
                    "kind": "Node",
                    "node_id": f"{name}-{n}",
                    "name": f"{name}-{n}",
                    "role": name,
                    "cpu": role.cpu or 1,
                    "memory": role.memory or 1024,
                    "gpu": role.gpu,
                    "instance_class": role.instance_class,
                    "volume_size": role.volume.size,
                    "mount_point": mount if isinstance(mount, str) else ",".join(mount),
                    "filesystem": role.volume.filesystem,
                    "image": image_of(role),
                    "container": role.container.model_dump(),
                    "subnet": spec.subnet,
                    "env": {**spec.env, **role.env},
                    "services": {k: v.model_dump() for k, v in role.services.items()},
                    "secrets": list(secrets),
                }
            )
    return objects


def user_data(obj: dict[str, Any]) -> str:
    """The first-boot script of a node: its environment, then its `init` and `start`
    services in `order`. Nothing runs later: there is no agent on the instance."""
    lines = ["#!/bin/sh", "set -e", "# OpenPitrix VM node: runs once at first boot"]
    env = {
        "OP_NODE_ID": obj["node_id"],
        "OP_ROLE": obj["role"],
        **{str(k): v for k, v in (obj.get("env") or {}).items()},
    }
    container = obj.get("container") or {}
    if container.get("image"):
        env["OP_CONTAINER_IMAGE"] = container["image"]
    for key, value in env.items():
        if key.isidentifier():
            text = value if isinstance(value, str) else str(value)
            lines.append(f"export {key}={shlex.quote(text)}")
    services = obj.get("services") or {}
    boot = [
        (int((services.get(name) or {}).get("order") or 0), i, name)
        for i, name in enumerate(("init", "start"))
    ]
    for _order, _i, name in sorted(boot):
        cmd = (services.get(name) or {}).get("cmd", "")
        if cmd:
            lines.append(f"# service {name}")
            lines.append(cmd)
    return "\n".join(lines) + "\n"


def node_number(node_id: str) -> int:
    tail = node_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def state_nodes(state: ClusterState, role: str) -> list[NodeState]:
    return [n for n in state.nodes if n.role == role]


def new_node_ids(state: ClusterState, params: AddNodesParams) -> list[str]:
    """The node ids add-nodes makes, numbered on from the role's highest (planned from the
    state, so a re-run makes the same ones)."""
    nodes = state_nodes(state, params.role)
    if not nodes:
        raise ProviderError("no_such_role", f"the cluster has no role {params.role!r}")
    top = max(node_number(n.node_id) for n in nodes)
    return [f"{params.role}-{top + i}" for i in range(1, params.count + 1)]


def survey_of(instances: list[CloudInstance], volumes: dict[str, int]) -> dict[str, Any]:
    """The cluster's roles and nodes as the cloud holds them (`volumes`: size by node)."""
    ordered = sorted(instances, key=lambda i: (i.role, node_number(i.node_id)))
    roles: dict[str, list[CloudInstance]] = {}
    for inst in ordered:
        roles.setdefault(inst.role, []).append(inst)
    state = ClusterState(
        roles=[
            RoleState(
                role=role,
                status=members[0].status if len({m.status for m in members}) == 1 else "mixed",
                count=len(members),
            )
            for role, members in roles.items()
        ],
        nodes=[
            NodeState(
                node_id=i.node_id,
                role=i.role,
                instance_id=i.instance_id,
                private_ip=i.private_ip,
                status=i.status,
                cpu=i.cpu,
                memory=i.memory,
                volume_size=volumes.get(i.node_id, 0),
            )
            for i in ordered
        ],
    )
    return state.model_dump(mode="json")


def added_nodes(
    deployed: Release | None, state: ClusterState, role: str, node_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """New nodes of `role`: specified as the role's nodes in the deployed release, sized like
    the role's nodes now (a resize changed them since)."""
    template = next(
        (
            o
            for o in (deployed.manifest if deployed and deployed.manifest else [])
            if o["role"] == role
        ),
        None,
    )
    if template is None:
        raise ProviderError("no_such_role", f"the deployed release has no role {role!r}")
    like = next((n.model_extra or {} for n in state_nodes(state, role)), {})
    sizes = {k: like[k] for k in ("cpu", "memory", "volume_size") if like.get(k)}
    return [{**template, **sizes, "node_id": n, "name": n} for n in node_ids]
