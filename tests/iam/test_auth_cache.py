"""The token check reads the user from the gateway's cache: no database statement per request
while nothing changed, and the change's own gateway drops the entry when it commits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event, update
from sqlmodel import col

from openpitrix.db.engine import Database
from openpitrix.iam.authcache import AuthCache
from openpitrix.iam.models import User
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
    # And the statements run through db.reads, where the token check reads the facts.
    reads = live.app.state.platform.db.reads
    run = reads.run

    async def counted_run(*queries: Any) -> Any:
        statements.extend(prepared.sql for prepared, _ in queries)
        return await run(*queries)

    reads.run = counted_run
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


async def test_an_entry_past_half_its_time_is_served_and_read_again_behind_it(
    db: Database,
) -> None:
    """A busy user's requests never wait for the facts, yet a change made behind the
    cache's back (no note, no message) is still seen within the cache's time."""
    now = [1000.0]
    cache = AuthCache(db, 1.0, clock=lambda: now[0])
    account = await make_user(db, Role.DEVELOPER)
    user, _ = await cache.facts(account.user_id, None)
    assert user is not None and user.role == Role.DEVELOPER
    async with db.transaction() as session:
        await session.execute(
            update(User).where(col(User.user_id) == account.user_id).values(role=Role.ISV)
        )
    now[0] += 0.6  # past half of the 1 s: still served, and read again in the background
    served, _ = await cache.facts(account.user_id, None)
    assert served is user
    await asyncio.sleep(0.2)
    for _ in range(50):  # the background read is done once the new facts are served
        fresh, _ = await cache.facts(account.user_id, None)
        if fresh is not user:
            break
        await asyncio.sleep(0.05)
    assert fresh is not None and fresh.role == Role.ISV
