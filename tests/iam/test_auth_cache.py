"""The token check reads the user from the gateway's cache: no database statement per request
while nothing changed, and the change's own gateway drops the entry when it commits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from openpitrix.db.engine import Database
from openpitrix.iam.schemas import Role
from openpitrix.settings import Settings
from tests.conftest import LiveServer
from tests.iam.conftest import login, make_user


@pytest.fixture
async def long_cache(settings: Settings) -> AsyncIterator[LiveServer]:
    """A gateway whose cache entries outlive the test: only invalidation can refresh them."""
    auth = settings.auth.model_copy(update={"check_cache_seconds": 60})
    # No relay: its polling would be the only other statements this process runs.
    own = settings.model_copy(update={"auth": auth, "relay_enabled": False})
    async with LiveServer(own, run_workers=False) as live:
        yield live


def count_statements(live: LiveServer) -> list[str]:
    statements: list[str] = []
    engine = live.app.state.platform.db.engine.sync_engine

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return statements


async def test_a_repeated_token_check_runs_no_statement(
    long_cache: LiveServer, db: Database
) -> None:
    async with httpx.AsyncClient(base_url=long_cache.url, timeout=30) as http:
        account = await login(http, await make_user(db, Role.DEVELOPER))
        assert (await http.get("/v1/providers", headers=account.headers)).status_code == 200
        statements = count_statements(long_cache)
        assert (await http.get("/v1/providers", headers=account.headers)).status_code == 200
        assert (await http.get("/v1/providers", headers=account.headers)).status_code == 200
    assert statements == []


async def test_a_change_drops_the_cached_facts_in_its_own_gateway_at_once(
    long_cache: LiveServer, db: Database
) -> None:
    async with httpx.AsyncClient(base_url=long_cache.url, timeout=30) as http:
        admin = await login(http, await make_user(db, Role.ADMIN))
        other = await login(http, await make_user(db, Role.ADMIN))
        assert (await http.get("/v1/users", headers=other.headers)).status_code == 200
        demote = await http.patch(
            f"/v1/users/{other.user_id}", json={"role": "developer"}, headers=admin.headers
        )
        assert demote.status_code == 200, demote.text
        assert (await http.get("/v1/users", headers=other.headers)).status_code == 403
        deleted = await http.delete(f"/v1/users/{other.user_id}", headers=admin.headers)
        assert deleted.status_code == 204, deleted.text
        assert (await http.get("/v1/users/me", headers=other.headers)).status_code == 401
