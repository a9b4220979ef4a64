"""A cluster's roles and nodes as rows: written from what a provider found (a task kind that
`Produces.STATE`), read for the API and for planning the next action."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix.clusters.models import ClusterNode, ClusterRole
from openpitrix.db.types import utcnow
from openpitrix.providers.base import ClusterState, NodeState, RoleState

ROLE_COLUMNS = {"role", "status"}
NODE_COLUMNS = {"node_id", "role", "instance_id", "private_ip", "status"}


def _role(row: ClusterRole) -> RoleState:
    # The provider's own fields first: the row's columns are what the provider said last.
    return RoleState.model_validate({**row.detail, "role": row.role, "status": row.status})


def _node(row: ClusterNode) -> NodeState:
    return NodeState.model_validate(
        {
            **row.detail,
            "node_id": row.node_id,
            "role": row.role,
            "instance_id": row.instance_id,
            "private_ip": row.private_ip,
            "status": row.status,
        }
    )


# Built once (the clusters' ids are bound, expanded to their number): building them per call
# cost about as much CPU as running them.
_ROLES = (
    select(ClusterRole)
    .where(col(ClusterRole.cluster_id).in_(bindparam("cluster_ids", expanding=True)))
    .order_by(col(ClusterRole.cluster_id), col(ClusterRole.position))
)
_NODES = (
    select(ClusterNode)
    .where(col(ClusterNode.cluster_id).in_(bindparam("cluster_ids", expanding=True)))
    .order_by(col(ClusterNode.cluster_id), col(ClusterNode.position))
)


async def states_of(session: AsyncSession, cluster_ids: Sequence[str]) -> dict[str, ClusterState]:
    """The roles and nodes of these clusters (two queries, whatever their number)."""
    found = {cluster_id: ClusterState() for cluster_id in cluster_ids}
    if not cluster_ids:
        return found
    ids = {"cluster_ids": list(cluster_ids)}
    for role in (await session.execute(_ROLES, ids)).scalars():
        found[role.cluster_id].roles.append(_role(role))
    for node in (await session.execute(_NODES, ids)).scalars():
        found[node.cluster_id].nodes.append(_node(node))
    return found


async def state_of(session: AsyncSession, cluster_id: str) -> ClusterState:
    return (await states_of(session, [cluster_id]))[cluster_id]


async def replace_state(session: AsyncSession, cluster_id: str, state: ClusterState) -> None:
    """Make the cluster's rows what the provider found: rows of roles and nodes it no longer
    lists go, the others are written as found."""
    now = utcnow()
    await session.execute(delete(ClusterRole).where(col(ClusterRole.cluster_id) == cluster_id))
    await session.execute(delete(ClusterNode).where(col(ClusterNode.cluster_id) == cluster_id))
    seen_roles: set[str] = set()
    for position, role in enumerate(state.roles):
        if role.role in seen_roles:
            continue
        seen_roles.add(role.role)
        session.add(
            ClusterRole(
                cluster_id=cluster_id,
                role=role.role,
                position=position,
                status=role.status,
                detail=role.model_dump(mode="json", exclude=ROLE_COLUMNS),
                update_time=now,
            )
        )
    seen_nodes: set[str] = set()
    for position, node in enumerate(state.nodes):
        if node.node_id in seen_nodes:
            continue
        seen_nodes.add(node.node_id)
        session.add(
            ClusterNode(
                cluster_id=cluster_id,
                node_id=node.node_id,
                position=position,
                role=node.role,
                instance_id=node.instance_id,
                private_ip=node.private_ip,
                status=node.status,
                detail=node.model_dump(mode="json", exclude=NODE_COLUMNS),
                update_time=now,
            )
        )
