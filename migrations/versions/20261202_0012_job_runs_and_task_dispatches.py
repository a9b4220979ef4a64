"""job runs and task dispatches

Why: every message sent for a job needs an id of its own for the job's whole life; a job counts
its runs (one more per retry) and a task its dispatches, and both go into the message ids.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("dispatches", sa.Integer(), nullable=False, server_default="0")
        )
    # A job retried before runs were counted is in run `retries` (its result says how many):
    # its event stream tells its runs apart by that number.
    jobs = sa.table(
        "jobs",
        sa.column("job_id", sa.String()),
        sa.column("run", sa.Integer()),
        sa.column("result", sa.JSON()),
    )
    bind = op.get_bind()
    for job_id, result in bind.execute(sa.select(jobs.c.job_id, jobs.c.result)).fetchall():
        retries = result.get("retries") if isinstance(result, dict) else None
        if isinstance(retries, int) and retries > 0:
            bind.execute(jobs.update().where(jobs.c.job_id == job_id).values(run=retries))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("dispatches")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("run")
