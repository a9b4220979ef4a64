"""The app lists run statements prepared once per shape (db.reads.prepare): every caller and
every search word gets the rows the statement built for that request alone would give."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlmodel import col

from openpitrix import ids
from openpitrix.apps import service
from openpitrix.apps.models import App
from openpitrix.db.engine import Database
from openpitrix.db.listing import ListQuery, read_page
from openpitrix.iam.access import Caller, Op
from openpitrix.iam.schemas import Role
from openpitrix.repos.models import Repo
from tests.conftest import unique

# Words whose LIKE patterns need escaping, and text that only some lower() functions fold.
NAMES = ["fifty-50%-off", "fifty-500-off", "a_b-chart", "axb-chart", "Ünïcode-Chart", "ünïcode"]
WORDS = ["50%", "a_b", "_", "%", "/", "CHART", "ünï", "ÜNÏ", "Ünï", "nothing-like-it"]


async def _seed(db: Database) -> tuple[str, dict[str, list[str]]]:
    repo_id = ids.new_id(ids.REPO)
    first, second = f"usr-{unique('o')}", f"usr-{unique('o')}"
    owners = {first: NAMES[:3], second: NAMES[3:]}
    rows: list[dict[str, Any]] = []
    for owner, names in owners.items():
        rows += [
            {
                "app_id": ids.new_id(ids.APP),
                "repo_id": repo_id,
                "name": name,
                "description": f"the {name} app",
                "owner": owner,
                "owner_path": f":{owner}",
            }
            for name in names
        ]
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
                    "visibility": "private",
                }
            ],
        )
        await session.execute(insert(App), rows)
    return repo_id, owners


async def test_each_caller_sees_their_own_apps_through_one_prepared_statement(
    db: Database,
) -> None:
    repo_id, owners = await _seed(db)
    for _ in range(2):  # the second round runs on the statements the first one prepared
        for owner, names in owners.items():
            access = Caller(user_id=owner, role=Role.DEVELOPER).access(Op.APP_READ)
            # Within the private repo both callers have apps in: other tests' apps in public
            # repos are visible to any developer and stay out of the count.
            total, rows = await service.list_apps(
                db.reads,
                ListQuery(limit=50, sort_key="name", reverse=False),
                access,
                repo_id=[repo_id],
            )
            assert total == len(names)
            assert [r["name"] for r in rows] == sorted(names)
            assert {r["owner"] for r in rows} == {owner}


async def test_search_words_match_the_rows_the_unprepared_statement_matches(
    db: Database,
) -> None:
    repo_id, _ = await _seed(db)
    admin = Caller(user_id="usr-admin", role=Role.ADMIN).access(Op.APP_READ)
    matched: dict[str, list[str]] = {}
    for word in WORDS:
        query = ListQuery(limit=50, sort_key="name", reverse=False, search_word=word)
        total, rows = await service.list_apps(db.reads, query, admin, repo_id=[repo_id])
        expected_total, expected = await read_page(
            db.reads,
            select(col(App.name)).where(col(App.repo_id) == repo_id),
            service.APP_LIST,
            query,
        )
        assert [r["name"] for r in rows] == [r["name"] for r in expected], word
        assert total == expected_total, word
        matched[word] = [r["name"] for r in rows]
    # The wildcards are matched literally, and the comparison above is not between empties.
    assert matched["50%"] == ["fifty-50%-off"]
    assert matched["a_b"] == ["a_b-chart"]
    assert matched["CHART"] == ["a_b-chart", "axb-chart", "Ünïcode-Chart"]
    assert "ünïcode" in matched["ünï"]
    assert matched["nothing-like-it"] == []
