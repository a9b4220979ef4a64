"""task slot index

Why: a target's slot counts (`jobs.slots`) run whenever a task is claimed, settled or
dispatched. With the index on (target, status) alone, every active task of the target was
read from the table for its slot and creation time: ~0.3 ms of SQLite work per count with 100
jobs on one runtime, on the event loop. This index holds every column the counts use, so each
count is a range of the index (and (target, status) remains its prefix).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-03 05:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tasks_target_slot",
            ["target", "status", "slot", "create_time", "task_id"],
            unique=False,
        )
        batch_op.drop_index("ix_tasks_target_status")


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_target_status", ["target", "status"], unique=False)
        batch_op.drop_index("ix_tasks_target_slot")
