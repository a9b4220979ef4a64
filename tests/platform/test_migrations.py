"""One alembic history that upgrades, matches the models, and downgrades, on this test run's
database (SQLite by default, PostgreSQL in CI)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from openpitrix.db.migrate import downgrade, upgrade
from openpitrix.models import metadata


async def _tables_and_diff(url: str) -> tuple[set[str], list[object]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:

            def inspect_sync(sync_conn: object) -> tuple[set[str], list[object]]:
                tables = set(inspect(sync_conn).get_table_names())  # type: ignore[arg-type]
                ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})  # type: ignore[arg-type]
                return tables, list(compare_metadata(ctx, metadata))

            return await conn.run_sync(inspect_sync)
    finally:
        await engine.dispose()


async def test_migrations_build_exactly_the_models_and_downgrade_cleanly(
    empty_database: str,
) -> None:
    await asyncio.to_thread(upgrade, empty_database)
    tables, diff = await _tables_and_diff(empty_database)
    assert set(metadata.tables) <= tables
    assert diff == [], f"models and migrations disagree: {diff}"

    await asyncio.to_thread(downgrade, empty_database, "base")
    tables, _ = await _tables_and_diff(empty_database)
    assert tables <= {"alembic_version"}

    await asyncio.to_thread(upgrade, empty_database)  # and back up again
    tables, _ = await _tables_and_diff(empty_database)
    assert set(metadata.tables) <= tables


async def test_catalog_counts_migration_backfills_existing_repos(empty_database: str) -> None:
    from sqlalchemy import text

    await asyncio.to_thread(upgrade, empty_database, "0001")
    engine = create_async_engine(empty_database)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO repos (repo_id, name, description, type, url, providers, labels,"
                    " selectors, visibility, app_default_status, status, owner, owner_path,"
                    " create_time, update_time, status_time) VALUES ('repo-m', 'm', '', 'http',"
                    " 'http://x', '[]', '[]', '[]', 'public', 'active', 'active', 's', 'root',"
                    " :now, :now, :now)"
                ),
                {"now": now},
            )
            for app_id, status in (("app-1", "active"), ("app-2", "deleted")):
                await conn.execute(
                    text(
                        "INSERT INTO apps (app_id, repo_id, name, description, home, icon,"
                        " keywords, maintainers, sources, latest_version, latest_app_version,"
                        " status, owner, owner_path, create_time, update_time, status_time)"
                        " VALUES (:id, 'repo-m', :id, '', '', '', '[]', '[]', '[]', '', '',"
                        " :status, 's', 'root', :now, :now, :now)"
                    ),
                    {"id": app_id, "status": status, "now": now},
                )
            for version_id, status in (
                ("appv-1", "active"),
                ("appv-2", "draft"),
                ("appv-3", "deleted"),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO app_versions (version_id, app_id, repo_id, name, version,"
                        " app_version, description, home, icon, keywords, maintainers, sources,"
                        " digest, package_url, status, owner, owner_path, create_time,"
                        " update_time, status_time) VALUES (:id, 'app-1', 'repo-m', 'a', :id,"
                        " '', '', '', '', '[]', '[]', '[]', '', '', :status, 's', 'root', :now,"
                        " :now, :now)"
                    ),
                    {"id": version_id, "status": status, "now": now},
                )
        await asyncio.to_thread(upgrade, empty_database)
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT app_count, version_count FROM repos WHERE repo_id = 'repo-m'")
                )
            ).one()
        assert tuple(row) == (1, 2)
    finally:
        await engine.dispose()


async def test_outbox_keys_migration_keys_the_rows_still_unsent(empty_database: str) -> None:
    """Rows written before keys existed go out in their job's or resource's order too."""
    from sqlalchemy import text

    await asyncio.to_thread(upgrade, empty_database, "0015")
    engine = create_async_engine(empty_database)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows = {
        "m-evt": ("op.evt.usr-1.cluster.cl-1.job-1", b"{}", None),
        "m-cmd": ("op.cmd.job-manager.advance", b'{"job_id": "job-1"}', None),
        "m-other": ("elsewhere.x", b"not json", None),
        "m-sent": ("op.evt.usr-1.cluster.cl-2._", b"{}", now),
    }
    try:
        async with engine.begin() as conn:
            for msg_id, (subject, payload, sent_at) in rows.items():
                await conn.execute(
                    text(
                        "INSERT INTO outbox (msg_id, subject, payload, headers, created_at,"
                        " sent_at) VALUES (:id, :subject, :payload, '{}', :now, :sent)"
                    ),
                    {
                        "id": msg_id,
                        "subject": subject,
                        "payload": payload,
                        "now": now,
                        "sent": sent_at,
                    },
                )
        await asyncio.to_thread(upgrade, empty_database)
        async with engine.connect() as conn:
            keys = dict((await conn.execute(text("SELECT msg_id, key FROM outbox"))).all())
        assert keys == {
            "m-evt": "cluster.cl-1",
            "m-cmd": "job.job-1",
            "m-other": "elsewhere.x",
            "m-sent": "",  # already published: its key no longer matters
        }
    finally:
        await engine.dispose()
