"""repo catalog counts

Why: a re-index answered 304 reports the catalog size without counting thousands of rows, and
clients see each repo's number of apps and versions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 04:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("repos", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("app_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("version_count", sa.Integer(), nullable=False, server_default="0")
        )
    # Existing repos get their real counts now, not on their next sync.
    op.execute(
        "UPDATE repos SET "
        "app_count = (SELECT count(*) FROM apps "
        "WHERE apps.repo_id = repos.repo_id AND apps.status != 'deleted'), "
        "version_count = (SELECT count(*) FROM app_versions "
        "WHERE app_versions.repo_id = repos.repo_id AND app_versions.status != 'deleted')"
    )


def downgrade() -> None:
    with op.batch_alter_table("repos", schema=None) as batch_op:
        batch_op.drop_column("version_count")
        batch_op.drop_column("app_count")
