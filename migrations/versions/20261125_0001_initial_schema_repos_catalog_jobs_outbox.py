"""initial schema: repos, catalog, jobs, outbox

Why: the foundation tables for repo indexing, the app catalog, jobs/tasks and the outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 02:50:34.144331
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("resource_kind", sa.String(length=30), nullable=False),
        sa.Column("resource_id", sa.String(length=40), nullable=False),
        sa.Column("owner", sa.String(length=60), nullable=False),
        sa.Column("owner_path", sa.String(length=300), nullable=False),
        sa.Column("executor", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("error_code", sa.String(length=60), nullable=True),
        sa.Column("error_message", sa.String(), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("job_id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_action"), ["action"], unique=False)
        batch_op.create_index("ix_jobs_resource", ["resource_kind", "resource_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_status"), ["status"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("msg_id", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("msg_id"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_unsent", ["sent_at", "seq"], unique=False)

    op.create_table(
        "repos",
        sa.Column("repo_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("providers", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("selectors", sa.JSON(), nullable=False),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("app_default_status", sa.String(length=16), nullable=False),
        sa.Column("credential", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=60), nullable=False),
        sa.Column("owner_path", sa.String(length=300), nullable=False),
        sa.Column("index_interval_seconds", sa.Integer(), nullable=True),
        sa.Column("index_job_id", sa.String(length=40), nullable=True),
        sa.Column("next_index_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_index_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_index_status", sa.String(length=16), nullable=True),
        sa.Column("last_index_error", sa.String(length=2000), nullable=True),
        sa.Column("index_etag", sa.String(length=500), nullable=True),
        sa.Column("index_last_modified", sa.String(length=100), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("repo_id"),
    )
    with op.batch_alter_table("repos", schema=None) as batch_op:
        batch_op.create_index("ix_repos_next_index_time", ["next_index_time"], unique=False)
        batch_op.create_index(batch_op.f("ix_repos_status"), ["status"], unique=False)
        batch_op.create_index(
            "uq_repos_live_name",
            ["name"],
            unique=True,
            sqlite_where=sa.text("status != 'deleted'"),
            postgresql_where=sa.text("status != 'deleted'"),
        )

    op.create_table(
        "apps",
        sa.Column("app_id", sa.String(length=40), nullable=False),
        sa.Column("repo_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("home", sa.String(), nullable=False),
        sa.Column("icon", sa.String(), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("maintainers", sa.JSON(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("latest_version", sa.String(length=100), nullable=False),
        sa.Column("latest_app_version", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=60), nullable=False),
        sa.Column("owner_path", sa.String(length=300), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["repo_id"],
            ["repos.repo_id"],
        ),
        sa.PrimaryKeyConstraint("app_id"),
        sa.UniqueConstraint("repo_id", "name", name="uq_apps_repo_name"),
    )
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_apps_repo_id"), ["repo_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_apps_status"), ["status"], unique=False)

    op.create_table(
        "repo_labels",
        sa.Column("repo_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(["repo_id"], ["repos.repo_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("repo_id", "kind", "position"),
    )
    with op.batch_alter_table("repo_labels", schema=None) as batch_op:
        batch_op.create_index("ix_repo_labels_lookup", ["kind", "key", "value"], unique=False)

    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("executor", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failure_allowed", sa.Boolean(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("error_code", sa.String(length=60), nullable=True),
        sa.Column("error_message", sa.String(), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.job_id"],
        ),
        sa.PrimaryKeyConstraint("task_id"),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tasks_job_id"), ["job_id"], unique=False)

    op.create_table(
        "app_versions",
        sa.Column("version_id", sa.String(length=40), nullable=False),
        sa.Column("app_id", sa.String(length=40), nullable=False),
        sa.Column("repo_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("app_version", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("home", sa.String(), nullable=False),
        sa.Column("icon", sa.String(), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("maintainers", sa.JSON(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(length=200), nullable=False),
        sa.Column("package_url", sa.String(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=60), nullable=False),
        sa.Column("owner_path", sa.String(length=300), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["apps.app_id"],
        ),
        sa.PrimaryKeyConstraint("version_id"),
        sa.UniqueConstraint("app_id", "version", name="uq_app_versions_app_version"),
    )
    with op.batch_alter_table("app_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_app_versions_app_id"), ["app_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_app_versions_repo_id"), ["repo_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_app_versions_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("app_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app_versions_status"))
        batch_op.drop_index(batch_op.f("ix_app_versions_repo_id"))
        batch_op.drop_index(batch_op.f("ix_app_versions_app_id"))

    op.drop_table("app_versions")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasks_job_id"))

    op.drop_table("tasks")
    with op.batch_alter_table("repo_labels", schema=None) as batch_op:
        batch_op.drop_index("ix_repo_labels_lookup")

    op.drop_table("repo_labels")
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_apps_status"))
        batch_op.drop_index(batch_op.f("ix_apps_repo_id"))

    op.drop_table("apps")
    with op.batch_alter_table("repos", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_repos_live_name",
            sqlite_where=sa.text("status != 'deleted'"),
            postgresql_where=sa.text("status != 'deleted'"),
        )
        batch_op.drop_index(batch_op.f("ix_repos_status"))
        batch_op.drop_index("ix_repos_next_index_time")

    op.drop_table("repos")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_unsent")

    op.drop_table("outbox")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_status"))
        batch_op.drop_index("ix_jobs_resource")
        batch_op.drop_index(batch_op.f("ix_jobs_action"))

    op.drop_table("jobs")
