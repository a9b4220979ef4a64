"""cluster roles and nodes as rows

Why: a cluster's roles and nodes were a JSON blob in the shape of the Kubernetes provider's
describe; any provider now fills rows of one shape (role, node id, instance id, private IP,
status), with its own fields kept in `detail`. What the blob held moves into the rows.

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-02 09:00:00
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fk() -> sa.ForeignKey:
    return sa.ForeignKey("clusters.cluster_id", ondelete="CASCADE")


def _text(value: Any, size: int) -> str:
    return str(value or "")[:size]


def upgrade() -> None:
    roles = op.create_table(
        "cluster_roles",
        sa.Column("cluster_id", sa.String(length=40), _fk(), primary_key=True),
        sa.Column("role", sa.String(length=253), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    nodes = op.create_table(
        "cluster_nodes",
        sa.Column("cluster_id", sa.String(length=40), _fk(), primary_key=True),
        sa.Column("node_id", sa.String(length=253), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=253), nullable=False),
        sa.Column("instance_id", sa.String(length=253), nullable=False),
        sa.Column("private_ip", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    clusters = sa.table(
        "clusters", sa.column("cluster_id", sa.String()), sa.column("resources", sa.JSON())
    )
    bind = op.get_bind()
    now = datetime.now(UTC)
    for cluster_id, resources in bind.execute(
        sa.select(clusters.c.cluster_id, clusters.c.resources)
    ).all():
        found = json.loads(resources) if isinstance(resources, str) else resources
        if not isinstance(found, dict):
            continue
        role_rows, node_rows, seen_roles, seen_nodes = [], [], set(), set()
        for position, role in enumerate(found.get("roles") or []):
            if not isinstance(role, dict):
                continue
            # Kubernetes workloads of two kinds may share a name: the role is `<kind>/<name>`.
            kind = str(role.get("kind") or "").lower()
            name = _text(
                role.get("role") or (f"{kind}/" if kind else "") + str(role.get("name")), 253
            )
            if not name or name in seen_roles:
                continue
            seen_roles.add(name)
            ready = role.get("ready")
            role_rows.append(
                {
                    "cluster_id": cluster_id,
                    "role": name,
                    "position": position,
                    "status": "" if ready is None else ("ready" if ready else "not ready"),
                    "detail": role,
                    "update_time": now,
                }
            )
        for position, node in enumerate(found.get("nodes") or []):
            if not isinstance(node, dict):
                continue
            node_id = _text(node.get("node_id") or node.get("name"), 253)
            if not node_id or node_id in seen_nodes:
                continue
            seen_nodes.add(node_id)
            node_rows.append(
                {
                    "cluster_id": cluster_id,
                    "node_id": node_id,
                    "position": position,
                    "role": _text(node.get("role"), 253),
                    "instance_id": _text(node.get("instance_id"), 253),
                    "private_ip": _text(node.get("private_ip") or node.get("ip"), 64),
                    "status": _text(node.get("status") or node.get("phase"), 64),
                    "detail": node,
                    "update_time": now,
                }
            )
        if role_rows:
            op.bulk_insert(roles, role_rows)
        if node_rows:
            op.bulk_insert(nodes, node_rows)
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.drop_column("resources")


def downgrade() -> None:
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("resources", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    op.drop_table("cluster_nodes")
    op.drop_table("cluster_roles")
