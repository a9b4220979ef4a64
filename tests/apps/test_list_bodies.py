"""The catalog lists write their rows straight to JSON (api.responses.page_response): a client
gets the very bytes the read models would have written for the same rows, for every kind of
value a chart's metadata can hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert, select
from sqlmodel import col

from openpitrix import ids
from openpitrix.apps.models import App, AppVersion
from openpitrix.apps.schemas import AppPage, AppRead, AppVersionPage, AppVersionRead
from openpitrix.db.engine import Database
from openpitrix.repos.models import Repo
from tests.conftest import unique

# Text that JSON writers are known to differ on: non-ASCII, control characters, quotes,
# backslashes, a character outside the BMP, a slash.
ODD_TEXT = 'Ünïcødé "chart" \\ with\ttabs\x01\x1f, </script> and 🚀'
ODD_META: dict[str, Any] = {
    "description": ODD_TEXT,
    "home": "https://example.org/ä?x=1&y=2",
    "icon": "",
    "keywords": [],
    "maintainers": [
        {"name": "Zoë", "email": None, "url": "https://example.org", "n": 1.5, "ok": True},
        {"name": "plain"},
    ],
    "sources": ["https://example.org/ß"],
}


async def _seed(db: Database) -> tuple[str, str]:
    repo_id, app_id = ids.new_id(ids.REPO), ids.new_id(ids.APP)
    # One time without microseconds, one with: writers differ on the fraction's digits.
    whole = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    fraction = whole + timedelta(microseconds=120)
    times = {"create_time": whole, "update_time": fraction, "status_time": whole}
    async with db.transaction() as session:
        await session.execute(
            insert(Repo),
            [
                {
                    "repo_id": repo_id,
                    "name": unique(),
                    "type": "http",
                    "url": "https://charts.example.org",
                    "providers": ["kubernetes"],
                    "labels": [],
                    "selectors": [],
                    **times,
                }
            ],
        )
        await session.execute(
            insert(App),
            [
                {
                    "app_id": app_id,
                    "repo_id": repo_id,
                    "name": "ünï-chart",
                    "latest_version": "1.0.0",
                    "latest_app_version": "",
                    **times,
                    **ODD_META,
                }
            ],
        )
        await session.execute(
            insert(AppVersion),
            [
                {
                    "version_id": ids.new_id(ids.APP_VERSION),
                    "app_id": app_id,
                    "repo_id": repo_id,
                    "name": "ünï-chart",
                    "version": version,
                    "version_sort": sort,
                    "app_version": "",
                    "digest": "0" * 64,
                    "package_url": f"https://charts.example.org/c-{version}.tgz",
                    "created": created,
                    "package_kind": kind,
                    **times,
                    **ODD_META,
                }
                for version, sort, created, kind in (
                    ("1.0.0", "1.00000.0", fraction, "helm"),
                    ("0.9.0", "0.00009.0", None, "vm"),  # a chart version with no `created`
                )
            ],
        )
    return repo_id, app_id


async def test_app_and_version_lists_are_byte_for_byte_what_the_read_models_write(
    client: httpx.AsyncClient, db: Database
) -> None:
    repo_id, app_id = await _seed(db)

    apps = await client.get("/v1/apps", params={"repo_id": repo_id})
    versions = await client.get(f"/v1/apps/{app_id}/versions")
    assert apps.status_code == versions.status_code == 200, (apps.text, versions.text)
    assert apps.headers["content-type"] == "application/json"

    async with db.read_session() as session:
        app_rows = (await session.scalars(select(App).where(col(App.repo_id) == repo_id))).all()
        version_rows = (
            await session.scalars(
                select(AppVersion)
                .where(col(AppVersion.app_id) == app_id)
                .order_by(col(AppVersion.created).desc().nulls_last())
            )
        ).all()
    expected_apps = AppPage(
        total_count=1, items=[AppRead.model_validate(a) for a in app_rows]
    ).model_dump_json()
    expected_versions = AppVersionPage(
        total_count=2, items=[AppVersionRead.model_validate(v) for v in version_rows]
    ).model_dump_json()
    assert apps.content == expected_apps.encode()
    assert versions.content == expected_versions.encode()
    # And the values are the ones stored (the comparison above is not between two empties).
    item = apps.json()["items"][0]
    assert item["description"] == ODD_TEXT
    assert item["update_time"] == "2026-01-02T03:04:05.000120Z"
    assert item["create_time"] == "2026-01-02T03:04:05Z"
    assert [v["created"] for v in versions.json()["items"]] == ["2026-01-02T03:04:05.000120Z", None]
