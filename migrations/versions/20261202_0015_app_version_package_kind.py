"""app version package kind

Why: VM repos use the same index shape and indexer as Helm repos, and one repo may serve both,
so each app version records what its package is (`helm` or `vm`) for deploys and the render
endpoint to tell them apart. Existing versions all came from Helm repos.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("app_versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("package_kind", sa.String(length=8), nullable=False, server_default="helm")
        )
        batch_op.create_index(
            batch_op.f("ix_app_versions_package_kind"), ["package_kind"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("app_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app_versions_package_kind"))
        batch_op.drop_column("package_kind")
