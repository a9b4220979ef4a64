"""task targets

Why: job tasks against one runtime are capped across all task-managers; a task records the
runtime it acts on, and whether it holds one of that runtime's slots or waits for one.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("target", sa.String(length=40), nullable=True))
        batch_op.add_column(
            sa.Column("slot", sa.String(length=8), nullable=False, server_default="")
        )
        batch_op.create_index("ix_tasks_target_status", ["target", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_target_status")
        batch_op.drop_column("slot")
        batch_op.drop_column("target")
