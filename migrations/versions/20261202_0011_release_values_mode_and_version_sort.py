"""release values mode and version sort

Why: a release records whether its values were merged over the previous revision's (update-env
now reuses values by default) or started from the chart's defaults; and `sort_key=version`
sorts app versions semantically (1.9 before 1.15.3) through a column holding the version in
semantic order as text, compared byte by byte ("C" collation on PostgreSQL).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 05:00:00
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A copy of openpitrix.indexer.sync.version_sort as of this revision: a migration must compute
# the same values however the code changes later.
_SEMVER = re.compile(
    r"v?(?P<core>[0-9]+(?:\.[0-9]+){0,2})(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?"
)
BATCH = 1000


def _number(number: int) -> str:
    digits = str(number)
    return f"{len(digits):02d}{digits}"


def version_sort(version: str) -> str:
    match = _SEMVER.fullmatch(version.strip())
    if match is None:
        return "0" + version
    numbers = [int(part) for part in match["core"].split(".")]
    numbers += [0] * (3 - len(numbers))
    core = "".join(_number(n) for n in numbers)
    if match["pre"] is None:
        return f"1{core}1"
    pre = "".join(
        ("0" + _number(int(part)) if part.isdigit() else "1" + part) + "!"
        for part in match["pre"].split(".")
    )
    return f"1{core}0{pre}"


def upgrade() -> None:
    with op.batch_alter_table("cluster_releases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("values_mode", sa.String(length=16), nullable=False, server_default="reset")
        )
    sort_type = sa.String(400).with_variant(sa.String(400, collation="C"), "postgresql")
    with op.batch_alter_table("app_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version_sort", sort_type, nullable=False, server_default=""))
    bind = op.get_bind()
    versions = sa.table(
        "app_versions", sa.column("version_id", sa.String), sa.column("version", sa.String)
    )
    target = sa.table(
        "app_versions", sa.column("version_id", sa.String), sa.column("version_sort", sa.String)
    )
    rows = bind.execute(sa.select(versions.c.version_id, versions.c.version)).all()
    stmt = (
        sa.update(target)
        .where(target.c.version_id == sa.bindparam("b_id"))
        .values(version_sort=sa.bindparam("b_sort"))
    )
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        bind.execute(
            stmt, [{"b_id": r.version_id, "b_sort": version_sort(r.version)} for r in batch]
        )


def downgrade() -> None:
    with op.batch_alter_table("app_versions", schema=None) as batch_op:
        batch_op.drop_column("version_sort")
    with op.batch_alter_table("cluster_releases", schema=None) as batch_op:
        batch_op.drop_column("values_mode")
