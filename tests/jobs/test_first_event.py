"""A job's first event reaches the client following it while the gateway is saturated: the
outbox relay and the job's event stream do not wait for a connection behind other requests,
and no job-manager needs to have picked the job up."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
from sqlalchemy import text

from openpitrix.bus.topology import JOB_MANAGER
from openpitrix.db.engine import Database
from openpitrix.jobs import service as jobs
from openpitrix.settings import DatabaseSettings
from tests.conftest import LiveServer, make_settings


async def test_first_event_streams_while_every_pooled_connection_is_taken(
    database_url: str, nats_url: str, tmp_path: Path, admin_headers: dict[str, str]
) -> None:
    settings = make_settings(
        database_url,
        nats_url,
        tmp_path / "data",
        # One connection in the gateway's main pool, and a request waiting for it would wait
        # far longer than this test does.
        database=DatabaseSettings(pool_size=1, pool_timeout_seconds=60),
    )
    settings = settings.model_copy(
        update={
            # The admin's auth facts are read once, below, and not again during the test.
            "auth": settings.auth.model_copy(update={"check_cache_seconds": 300.0}),
        }
    )
    other = Database(database_url)  # another gateway creating the job
    async with (
        LiveServer(settings, run_workers=False) as server,  # no job-manager runs the job
        httpx.AsyncClient(base_url=server.url, headers=admin_headers, timeout=30) as http,
    ):
        assert (await http.get("/v1/jobs", params={"limit": 1})).status_code == 200
        platform = server.app.state.platform
        # Every connection of the gateway's main pool is taken (a burst of POSTs holds them).
        async with platform.db.read_session() as held:
            await held.execute(text("SELECT 1"))
            async with other.transaction() as session:
                job = jobs.add_job(
                    session,
                    action="create",
                    resource_kind="cluster",
                    resource_id="cl-firstevent",
                    owner="someone",
                    owner_path="/someone",
                    manager=JOB_MANAGER,
                    verb="advance",
                )
                await session.flush()
            first = await asyncio.wait_for(_first_event(http, job.job_id), timeout=20)
            await held.rollback()
    await other.dispose()
    assert first["type"] == "job.status"
    assert first["status"] == "pending"
    assert first["job_id"] == job.job_id


async def _first_event(http: httpx.AsyncClient, job_id: str) -> dict[str, object]:
    async with http.stream("GET", f"/v1/jobs/{job_id}/events") as resp:
        assert resp.status_code == 200, await resp.aread()
        async for line in resp.aiter_lines():
            if line.startswith("data:"):
                event: dict[str, object] = orjson.loads(line[5:])
                return event
    raise AssertionError("the stream ended without an event")
