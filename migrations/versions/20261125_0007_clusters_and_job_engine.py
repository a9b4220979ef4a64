"""clusters, release history, and job engine columns

Why: deployments are clusters with a lock and a release history (upgrade prunes against it,
rollback re-deploys from it); jobs can be cancelled and tasks carry their own timeout.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clusters",
        sa.Column("owner", sa.String(length=60), nullable=False),
        sa.Column("owner_path", sa.String(length=300), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cluster_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("app_id", sa.String(length=40), nullable=False),
        sa.Column("version_id", sa.String(length=40), nullable=False),
        sa.Column("runtime_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=30), nullable=False),
        sa.Column("zone", sa.String(length=253), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("transition_status", sa.String(length=16), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=True),
        sa.Column("resources", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("cluster_id"),
    )
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.create_index("ix_clusters_owner", ["owner"], unique=False)
        batch_op.create_index("ix_clusters_runtime", ["runtime_id"], unique=False)
        batch_op.create_index("ix_clusters_app", ["app_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_clusters_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_clusters_version_id"), ["version_id"], unique=False)

    op.create_table(
        "cluster_releases",
        sa.Column("cluster_id", sa.String(length=40), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.String(length=40), nullable=False),
        sa.Column("chart_version", sa.String(length=100), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("manifest", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["cluster_id"], ["clusters.cluster_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("cluster_id", "revision"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("timeout_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("timeout_seconds")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("cancel_requested")
    op.drop_table("cluster_releases")
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clusters_version_id"))
        batch_op.drop_index(batch_op.f("ix_clusters_status"))
        batch_op.drop_index("ix_clusters_app")
        batch_op.drop_index("ix_clusters_runtime")
        batch_op.drop_index("ix_clusters_owner")
    op.drop_table("clusters")
