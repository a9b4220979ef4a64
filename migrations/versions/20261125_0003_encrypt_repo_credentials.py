"""encrypt repo credentials

Why: repo credentials were stored as plaintext JSON; they are now Fernet ciphertext in
`credential_secret`. Existing ones are encrypted here with the key ring of the running
settings (OPENPITRIX_AUTH__SECRET_KEYS, or the key file in the data dir), so run this migration
with the same settings as the server.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 04:10:00
"""

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import op

if TYPE_CHECKING:
    from openpitrix.crypto import SecretBox

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

repos = sa.table(
    "repos",
    sa.column("repo_id", sa.String),
    sa.column("credential", sa.JSON),
    sa.column("credential_secret", sa.Text),
)


def _secret_box() -> "SecretBox":
    # Imported only when there is something to convert: the key ring is app configuration.
    from openpitrix.crypto import load_secret_box
    from openpitrix.settings import Settings

    return load_secret_box(Settings())


def upgrade() -> None:
    with op.batch_alter_table("repos", schema=None) as batch_op:
        batch_op.add_column(sa.Column("credential_secret", sa.Text(), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(repos.c.repo_id, repos.c.credential).where(repos.c.credential.is_not(None))
    ).all()
    if rows:
        box = _secret_box()
        for repo_id, credential in rows:
            value = json.loads(credential) if isinstance(credential, str) else credential
            if value:
                conn.execute(
                    repos.update()
                    .where(repos.c.repo_id == repo_id)
                    .values(credential_secret=box.seal(value))
                )
    with op.batch_alter_table("repos", schema=None) as batch_op:
        batch_op.drop_column("credential")


def downgrade() -> None:
    with op.batch_alter_table("repos", schema=None) as batch_op:
        batch_op.add_column(sa.Column("credential", sa.JSON(), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(repos.c.repo_id, repos.c.credential_secret).where(
            repos.c.credential_secret.is_not(None)
        )
    ).all()
    if rows:
        box = _secret_box()
        for repo_id, secret in rows:
            conn.execute(
                repos.update().where(repos.c.repo_id == repo_id).values(credential=box.open(secret))
            )
    with op.batch_alter_table("repos", schema=None) as batch_op:
        batch_op.drop_column("credential_secret")
