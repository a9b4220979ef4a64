"""Re-encrypt stored secrets under the newest key (`openpitrix secrets rotate`).

Secret columns are registered below by table and column name, as migration 0003 names them,
rather than imported from the domain packages: this module stays shared infrastructure beside
`crypto`, and a later secret column (runtime credentials) joins by adding one `SecretColumn`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import TableClause

from openpitrix.crypto import SecretBox, SecretError
from openpitrix.db.engine import Database

BATCH_SIZE = 500


@dataclass(frozen=True)
class SecretColumn:
    """A text column holding one sealed secret per row, keyed by a single-column primary key."""

    table: str
    id_column: str
    secret_column: str

    def table_clause(self) -> TableClause:
        return sa.table(
            self.table, sa.column(self.id_column, sa.String), sa.column(self.secret_column, sa.Text)
        )


SECRET_COLUMNS: tuple[SecretColumn, ...] = (SecretColumn("repos", "repo_id", "credential_secret"),)


@dataclass
class RotationReport:
    """What a rotation did (or, on a dry run, would do)."""

    rotated: int = 0
    current: int = 0  # already sealed under the newest key: left as they are
    changed: int = 0  # rewritten concurrently between our read and our write: the writer won
    unreadable: list[str] = field(default_factory=list)  # "table/id": no configured key opens

    @property
    def ok(self) -> bool:
        return not self.unreadable

    def summary(self) -> str:
        return (
            f"rotated={self.rotated} unreadable={len(self.unreadable)}"
            f" current={self.current} changed={self.changed}"
        )


async def reseal_row(
    session: AsyncSession, column: SecretColumn, row_id: str, old_token: str, new_token: str
) -> bool:
    """Store `new_token` only if the row still holds `old_token`; False when it no longer does.

    The guard makes reading outside the write transaction safe: a credential a user changed (or
    a repo deleted) since we read it keeps the newer value instead of our stale re-encryption.
    """
    table = column.table_clause()
    result = await session.execute(
        sa.update(table)
        .where(
            table.c[column.id_column] == row_id,
            table.c[column.secret_column] == old_token,
        )
        .values({column.secret_column: new_token})
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def rotate_column(
    db: Database,
    box: SecretBox,
    column: SecretColumn,
    report: RotationReport,
    *,
    batch_size: int = BATCH_SIZE,
    dry_run: bool = False,
) -> None:
    """Reseal every non-null secret of `column`, `batch_size` rows per transaction.

    Unlike a service it owns its transactions: committing per batch is the point, so a big
    table never sits in one long transaction and memory holds one batch at a time.
    """
    table = column.table_clause()
    ident, secret = table.c[column.id_column], table.c[column.secret_column]
    last_id: Any = None
    while True:
        # Keyset pagination by primary key: each batch is one short query, whatever the table
        # size, and rows inserted or resealed meanwhile neither repeat nor shift the window.
        query = sa.select(ident, secret).where(secret.is_not(None)).order_by(ident)
        if last_id is not None:
            query = query.where(ident > last_id)
        async with db.read_session() as session:
            rows = (await session.execute(query.limit(batch_size))).all()
        if not rows:
            return
        last_id = rows[-1][0]
        resealed: list[tuple[str, str, str]] = []
        for row_id, token in rows:
            # Fernet tokens do not name their key: trying the newest key alone is what tells a
            # current row apart, so a re-run (after a failure, or to verify) rewrites nothing.
            if box.is_current(token):
                report.current += 1
                continue
            try:
                resealed.append((row_id, token, box.reseal(token)))
            except SecretError:
                report.unreadable.append(f"{column.table}/{row_id}")
        if dry_run:
            report.rotated += len(resealed)
        elif resealed:
            # Encryption happened above, outside the transaction: on SQLite the write lock is
            # held only for the guarded UPDATEs of this batch.
            async with db.transaction() as session:
                for row_id, old_token, new_token in resealed:
                    if await reseal_row(session, column, row_id, old_token, new_token):
                        report.rotated += 1
                    else:
                        report.changed += 1
        if len(rows) < batch_size:
            return


async def rotate_secrets(
    db: Database,
    box: SecretBox,
    *,
    columns: tuple[SecretColumn, ...] = SECRET_COLUMNS,
    batch_size: int = BATCH_SIZE,
    dry_run: bool = False,
) -> RotationReport:
    """Reseal every registered secret column under `box`'s newest key; unreadable rows are
    reported and left as they are."""
    report = RotationReport()
    for column in columns:
        await rotate_column(db, box, column, report, batch_size=batch_size, dry_run=dry_run)
    return report
