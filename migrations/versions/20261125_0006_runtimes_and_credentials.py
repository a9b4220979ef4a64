"""runtimes and runtime credentials

Why: deployments need places to run (runtimes: a provider zone with labels) and the encrypted
credentials that reach them; runtime labels get a side table so eligibility is SQL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = "status != 'deleted'"


def _owned_columns() -> list[sa.Column[str]]:
    return [
        sa.Column("owner", sa.String(length=60), nullable=False),
        sa.Column("owner_path", sa.String(length=300), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_time", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "runtime_credentials",
        *_owned_columns(),
        sa.Column("credential_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("provider", sa.String(length=30), nullable=False),
        sa.Column("endpoint_url", sa.String(length=2000), nullable=False),
        sa.Column("content_secret", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("credential_id"),
    )
    with op.batch_alter_table("runtime_credentials", schema=None) as batch_op:
        batch_op.create_index("ix_runtime_credentials_owner", ["owner"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_runtime_credentials_provider"), ["provider"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_runtime_credentials_status"), ["status"], unique=False)

    op.create_table(
        "runtimes",
        *_owned_columns(),
        sa.Column("runtime_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("provider", sa.String(length=30), nullable=False),
        sa.Column("zone", sa.String(length=253), nullable=False),
        sa.Column("credential_id", sa.String(length=40), nullable=False),
        sa.Column("endpoint_url", sa.String(length=2000), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["credential_id"], ["runtime_credentials.credential_id"]),
        sa.PrimaryKeyConstraint("runtime_id"),
    )
    with op.batch_alter_table("runtimes", schema=None) as batch_op:
        batch_op.create_index("ix_runtimes_owner", ["owner"], unique=False)
        batch_op.create_index("ix_runtimes_credential", ["credential_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_runtimes_provider"), ["provider"], unique=False)
        batch_op.create_index(batch_op.f("ix_runtimes_status"), ["status"], unique=False)
        batch_op.create_index(
            "uq_runtimes_live_zone",
            ["provider", "endpoint_url", "zone"],
            unique=True,
            sqlite_where=sa.text(LIVE),
            postgresql_where=sa.text(LIVE),
        )

    op.create_table(
        "runtime_labels",
        sa.Column("runtime_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(["runtime_id"], ["runtimes.runtime_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("runtime_id", "position"),
    )
    with op.batch_alter_table("runtime_labels", schema=None) as batch_op:
        batch_op.create_index("ix_runtime_labels_lookup", ["key", "value"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runtime_labels", schema=None) as batch_op:
        batch_op.drop_index("ix_runtime_labels_lookup")
    op.drop_table("runtime_labels")
    with op.batch_alter_table("runtimes", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_runtimes_live_zone", sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE)
        )
        batch_op.drop_index(batch_op.f("ix_runtimes_status"))
        batch_op.drop_index(batch_op.f("ix_runtimes_provider"))
        batch_op.drop_index("ix_runtimes_credential")
        batch_op.drop_index("ix_runtimes_owner")
    op.drop_table("runtimes")
    with op.batch_alter_table("runtime_credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runtime_credentials_status"))
        batch_op.drop_index(batch_op.f("ix_runtime_credentials_provider"))
        batch_op.drop_index("ix_runtime_credentials_owner")
    op.drop_table("runtime_credentials")
