"""runtime zone claims

Why: only some providers' zones belong to one runtime (a Kubernetes namespace); a cloud's
regions are shared by any number of runtimes. The unique index now holds `zone_claim`, the zone
for exclusive providers and NULL otherwise; every runtime made so far was Kubernetes'.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = "status != 'deleted'"


def upgrade() -> None:
    with op.batch_alter_table("runtimes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("zone_claim", sa.String(length=253), nullable=True))
    runtimes = sa.table("runtimes", sa.column("zone", sa.String()), sa.column("zone_claim"))
    op.execute(runtimes.update().values(zone_claim=runtimes.c.zone))
    with op.batch_alter_table("runtimes", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_runtimes_live_zone", sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE)
        )
        batch_op.create_index(
            "uq_runtimes_live_zone_claim",
            ["provider", "endpoint_url", "zone_claim"],
            unique=True,
            sqlite_where=sa.text(LIVE),
            postgresql_where=sa.text(LIVE),
        )


def downgrade() -> None:
    with op.batch_alter_table("runtimes", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_runtimes_live_zone_claim",
            sqlite_where=sa.text(LIVE),
            postgresql_where=sa.text(LIVE),
        )
        batch_op.create_index(
            "uq_runtimes_live_zone",
            ["provider", "endpoint_url", "zone"],
            unique=True,
            sqlite_where=sa.text(LIVE),
            postgresql_where=sa.text(LIVE),
        )
    with op.batch_alter_table("runtimes", schema=None) as batch_op:
        batch_op.drop_column("zone_claim")
