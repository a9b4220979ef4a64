"""index for the app list filtered by repo and status, in the list's order

Why: `GET /v1/apps?repo_id=<id>&status=active` made SQLite (no statistics) pick the status
index, which every app shares, read all apps and sort the matches (2.1 ms a page at 2,000
apps); with (repo_id, status, create_time, app_id) a page is read off one index in order and
its count from the same index.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02 16:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_apps_repo_status_create_time", "apps", ["repo_id", "status", "create_time", "app_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_apps_repo_status_create_time", table_name="apps")
