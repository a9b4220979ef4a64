"""outbox keys

Why: the relay published every message of the installation one at a time in one global order;
order matters per job and per resource only, so each row now names its key and the relay
publishes different keys side by side (rows still unsent get the key the writer would give).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

import orjson
import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

outbox = sa.table(
    "outbox",
    sa.column("seq", sa.Integer),
    sa.column("subject", sa.String),
    sa.column("payload", sa.LargeBinary),
    sa.column("key", sa.String),
    sa.column("sent_at", sa.DateTime),
)


def _key(subject: str, payload: bytes) -> str:
    """openpitrix.outbox.keys.message_key as of this revision (migrations keep their own copy)."""
    tokens = subject.split(".")
    if subject.startswith("op.evt.") and len(tokens) >= 5:
        return f"{tokens[3]}.{tokens[4]}"
    if subject.startswith("op.cmd."):
        try:
            job_id = orjson.loads(payload).get("job_id")
        except (orjson.JSONDecodeError, AttributeError):
            job_id = None
        if isinstance(job_id, str) and job_id:
            return f"job.{job_id}"
    return subject[:300]


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key", sa.String(300), nullable=False, server_default=""))
    bind = op.get_bind()
    unsent = bind.execute(
        sa.select(outbox.c.seq, outbox.c.subject, outbox.c.payload).where(
            outbox.c.sent_at.is_(None)
        )
    ).all()
    for seq, subject, payload in unsent:
        bind.execute(
            outbox.update().where(outbox.c.seq == seq).values(key=_key(subject, bytes(payload)))
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("key")
