"""task checkpoint

Why: a task resumed after its worker died could not know what its earlier run had asked the
cloud for (a QingCloud RunInstances accepted but not yet listed); each task now keeps a small
JSON checkpoint its runs write before they wait, and a resumed run reads.

Revision ID: 0023
Revises: 0018
Create Date: 2026-12-02 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("checkpoint", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("checkpoint")
