"""task runs_under

Why: a task-manager that settles a task now claims the job's next task in the same
transaction and runs it in the same consumer slot, under the command message it already
holds (no dispatch message, no second claim). A task so claimed records that message's id,
so that the message, redelivered after its worker died, finds and resumes the task.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-03 01:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("runs_under", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("runs_under")
