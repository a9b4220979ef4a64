"""`sort_key=version` orders app versions semantically, on SQLite and PostgreSQL, for versions
indexed from now on and for those stored before the column existed (migration backfill)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from openpitrix.db.migrate import downgrade, upgrade
from openpitrix.indexer.sync import version_sort
from tests.apps.test_api import app_named, indexed, versions_of
from tests.support.charts import ChartSpec, write_index
from tests.support.http_repo import RepoServer

# Semantic order, lowest first: non-semver text below every version, a pre-release below its
# release, numeric identifiers numerically and below alphanumeric ones, fewer identifiers
# first, and numbers compared as numbers (1.9 < 1.10.0 < 1.15.3).
ORDERED = [
    "latest",
    "0.9.0",
    "1.2",
    "1.9",
    "1.9.1",
    "1.10.0-1",
    "1.10.0-2",
    "1.10.0-10",
    "1.10.0-alpha",
    "1.10.0-alpha.1",
    "1.10.0-alpha.beta",
    "1.10.0-beta",
    "1.10.0-rc.1",
    "1.10.0-rc.2",
    "1.10.0-rc.10",
    "1.10.0",
    "1.15.3",
    "2.0.0-rc.1",
    "2.0.0",
    "10.0.0",
]


def shuffled(items: list[str]) -> list[str]:
    copy = list(items)
    random.Random(7).shuffle(copy)
    assert copy != items
    return copy


def test_the_sort_text_orders_bytes_in_semver_order() -> None:
    encoded = [version_sort(v).encode() for v in ORDERED]
    assert sorted(encoded) == encoded
    assert len(set(encoded)) == len(encoded)
    # A leading "v" and build metadata do not change a version's place.
    assert version_sort("v1.10.0+build.5") == version_sort("1.10.0")


async def test_sort_key_version_lists_versions_in_semantic_order(
    client: httpx.AsyncClient, repo_dir: Path, repo_server: RepoServer
) -> None:
    write_index(repo_dir, [ChartSpec("web", v) for v in shuffled(ORDERED)], packages=False)
    repo = await indexed(client, repo_server.url)
    app = await app_named(client, repo["repo_id"], "web")
    assert app["latest_version"] == "10.0.0"

    ascending = await versions_of(
        client, app["app_id"], [("sort_key", "version"), ("reverse", "false")]
    )
    assert [v["version"] for v in ascending["items"]] == ORDERED
    descending = await versions_of(client, app["app_id"], [("sort_key", "version")])
    assert [v["version"] for v in descending["items"]] == ORDERED[::-1]
    # Pages cut the same order.
    page = await client.get(
        f"/v1/apps/{app['app_id']}/versions",
        params={"sort_key": "version", "reverse": "false", "limit": 3, "offset": 3},
    )
    assert [v["version"] for v in page.json()["items"]] == ORDERED[3:6]


async def test_the_migration_gives_versions_stored_before_it_their_semantic_order(
    empty_database: str,
) -> None:
    await asyncio.to_thread(upgrade, empty_database, "0010")
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
            await conn.execute(
                text(
                    "INSERT INTO apps (app_id, repo_id, name, description, home, icon,"
                    " keywords, maintainers, sources, latest_version, latest_app_version,"
                    " status, owner, owner_path, create_time, update_time, status_time)"
                    " VALUES ('app-1', 'repo-m', 'web', '', '', '', '[]', '[]', '[]', '', '',"
                    " 'active', 's', 'root', :now, :now, :now)"
                ),
                {"now": now},
            )
            for i, version in enumerate(shuffled(ORDERED)):
                await conn.execute(
                    text(
                        "INSERT INTO app_versions (version_id, app_id, repo_id, name, version,"
                        " app_version, description, home, icon, keywords, maintainers, sources,"
                        " digest, package_url, status, owner, owner_path, create_time,"
                        " update_time, status_time) VALUES (:id, 'app-1', 'repo-m', 'web',"
                        " :version, '', '', '', '', '[]', '[]', '[]', '', '', 'active', 's',"
                        " 'root', :now, :now, :now)"
                    ),
                    {"id": f"appv-{i}", "version": version, "now": now},
                )
        await asyncio.to_thread(upgrade, empty_database)
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT version FROM app_versions ORDER BY version_sort, version_id")
            )
            assert [r.version for r in rows] == ORDERED
        await asyncio.to_thread(downgrade, empty_database, "0010")
        async with engine.connect() as conn:
            count = await conn.execute(text("SELECT count(*) FROM app_versions"))
            assert count.scalar() == len(ORDERED)
    finally:
        await engine.dispose()
