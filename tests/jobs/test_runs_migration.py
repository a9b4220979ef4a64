"""The migration that numbers job runs: a job retried before it keeps telling its runs apart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from openpitrix.db.migrate import downgrade, upgrade

BEFORE = "0011"  # the revision before job runs were counted


async def test_a_job_retried_before_the_migration_is_in_the_run_its_result_counts(
    empty_database: str,
) -> None:
    await asyncio.to_thread(upgrade, empty_database, BEFORE)
    engine = create_async_engine(empty_database)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        async with engine.begin() as conn:
            for job_id, result in (("j-retried", '{"retries": 2}'), ("j-once", "{}")):
                await conn.execute(
                    text(
                        "INSERT INTO jobs (job_id, action, status, resource_kind, resource_id,"
                        " owner, owner_path, attempts, progress, params, result, create_time,"
                        " status_time) VALUES (:id, 'create_cluster', 'failed', 'cluster', 'cl-1',"
                        " 's', 'root', 1, 0, '{}', :result, :now, :now)"
                    ),
                    {"id": job_id, "result": result, "now": now},
                )
        await asyncio.to_thread(upgrade, empty_database)
        async with engine.connect() as conn:
            runs = dict(
                (await conn.execute(text("SELECT job_id, run FROM jobs ORDER BY job_id"))).all()
            )
            dispatches = (await conn.execute(text("SELECT count(dispatches) FROM tasks"))).scalar()
        assert runs == {"j-once": 0, "j-retried": 2}
        assert dispatches == 0

        await asyncio.to_thread(downgrade, empty_database, BEFORE)
        async with engine.connect() as conn:
            columns = (await conn.execute(text("SELECT * FROM jobs LIMIT 1"))).keys()
        assert "run" not in columns
    finally:
        await engine.dispose()
