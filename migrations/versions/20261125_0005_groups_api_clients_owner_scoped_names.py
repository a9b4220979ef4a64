"""groups, API clients, repo names unique per owner

Why: row scoping needs each user's group path and indexes on owners; access tokens must be
revocable by password change; automation logs in as API clients; and with tenants, a repo
name taken by someone else must not be refused (nor reveal that it exists).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = "status != 'deleted'"


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("group_path", sa.String(length=200), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("tokens_valid_after", sa.DateTime(timezone=True), nullable=True)
        )

    op.create_table(
        "api_clients",
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("client_id"),
    )
    with op.batch_alter_table("api_clients", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_clients_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_api_clients_status"), ["status"], unique=False)

    with op.batch_alter_table("repos", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_repos_live_name", sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE)
        )
        batch_op.create_index(
            "uq_repos_live_owner_name",
            ["owner", "name"],
            unique=True,
            sqlite_where=sa.text(LIVE),
            postgresql_where=sa.text(LIVE),
        )
        batch_op.create_index("ix_repos_owner_path", ["owner_path"], unique=False)
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.create_index("ix_apps_owner", ["owner"], unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_owner", ["owner"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_owner")
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.drop_index("ix_apps_owner")
    with op.batch_alter_table("repos", schema=None) as batch_op:
        batch_op.drop_index("ix_repos_owner_path")
        batch_op.drop_index(
            "uq_repos_live_owner_name", sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE)
        )
        # Fails if two owners now use one name: rename one of them before downgrading.
        batch_op.create_index(
            "uq_repos_live_name",
            ["name"],
            unique=True,
            sqlite_where=sa.text(LIVE),
            postgresql_where=sa.text(LIVE),
        )

    with op.batch_alter_table("api_clients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_clients_status"))
        batch_op.drop_index(batch_op.f("ix_api_clients_user_id"))
    op.drop_table("api_clients")

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("tokens_valid_after")
        batch_op.drop_column("group_path")
