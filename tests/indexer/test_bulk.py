"""The catalog's bulk inserts bypass SQLAlchemy's per-row parameter handling: what they store
must be exactly what SQLAlchemy's own INSERT stores, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from openpitrix import ids
from openpitrix.apps.models import AppVersion
from openpitrix.db.engine import Database
from openpitrix.indexer.bulk import BulkInsert
from openpitrix.indexer.sync import INSERT_APP, INSERT_VERSION, apps_t, versions_t
from openpitrix.repos.models import Repo

IDS = ("app_id", "version_id", "repo_id")


async def _repo(db: Database) -> str:
    repo_id = ids.new_id(ids.REPO)
    async with db.transaction() as session:
        session.add(Repo(repo_id=repo_id, name=repo_id, type="http", url="http://h/"))
    return repo_id


def _rows(repo_id: str, now: datetime) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    app_id = ids.new_id(ids.APP)
    shared_keywords = ["web", "proxy"]
    app = (app_id, repo_id, "nginx", "d", "https://h", "", shared_keywords, [], [], "1.0.0", "2")
    app += ("active", "system", ":system", now, now, now)
    created = [
        datetime(2024, 1, 1, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
        None,
        datetime(2024, 1, 1, 8, 0, 0, 123456, tzinfo=UTC),  # the same instant as the first
    ]
    versions = [
        (
            ids.new_id(ids.APP_VERSION),
            app_id,
            repo_id,
            f"1.0.{i}",
            f"sort-{i}",
            "nginx",
            "2",
            "a description with 'quotes' and ünïcode",
            "https://h",
            "",
            shared_keywords,
            [{"name": "team", "email": "t@example.org", "url": "https://h/t"}],
            [],
            f"sha-{i}",
            f"https://h/nginx-1.0.{i}.tgz",
            when,
            "helm",
            "active",
            "system",
            ":system",
            now,
            now,
            now,
        )
        for i, when in enumerate(created)
    ]
    return app, versions


async def _stored(db: Database, table: str, repo_id: str) -> list[dict[str, Any]]:
    """The rows as the database holds them (no ORM type conversion), ids left out."""
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(f"SELECT * FROM {table} WHERE repo_id = :r ORDER BY name"),  # noqa: S608
                {"r": repo_id},
            )
        ).mappings()
        stored = [{k: v for k, v in row.items() if k not in IDS} for row in rows]
    if table == "app_versions":
        stored.sort(key=lambda row: row["version"])
    return stored


async def test_bulk_inserts_store_what_sqlalchemys_insert_stores(db: Database) -> None:
    now = datetime.now(UTC)
    ours, theirs = await _repo(db), await _repo(db)
    app, versions = _rows(ours, now)
    async with db.transaction() as session:
        await INSERT_APP.run(session, [app])
        await INSERT_VERSION.run(session, versions, chunk=2)  # more than one executemany
    app, versions = _rows(theirs, now)
    async with db.transaction() as session:
        await session.execute(insert(apps_t), [dict(zip(INSERT_APP.columns, app, strict=True))])
        await session.execute(
            insert(versions_t),
            [dict(zip(INSERT_VERSION.columns, row, strict=True)) for row in versions],
        )

    for table in ("apps", "app_versions"):
        assert await _stored(db, table, ours) == await _stored(db, table, theirs)
    async with db.read_session() as session:
        read = (
            (
                await session.execute(
                    select(AppVersion)
                    .where(AppVersion.repo_id == ours)  # type: ignore[arg-type]
                    .order_by(AppVersion.version)  # type: ignore[arg-type]
                )
            )
            .scalars()
            .all()
        )
    assert [v.created for v in read] == [
        datetime(2024, 1, 1, 8, 0, 0, 123456, tzinfo=UTC),
        None,
        datetime(2024, 1, 1, 8, 0, 0, 123456, tzinfo=UTC),
    ]
    assert [v.create_time for v in read] == [now] * 3
    assert read[0].keywords == ["web", "proxy"]
    assert read[0].maintainers == [{"name": "team", "email": "t@example.org", "url": "https://h/t"}]


def test_a_bulk_insert_must_name_every_column() -> None:
    # The driver runs no Python-side defaults: a left-out column would be NULL, not its default.
    with pytest.raises(ValueError, match="version_sort"):
        BulkInsert(versions_t, [c for c in INSERT_VERSION.columns if c != "version_sort"])
