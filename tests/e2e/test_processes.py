"""The production split as real processes: `openpitrix api` and `openpitrix worker` sharing the
session's nats-server and database, crashed and stopped the way operators and machines do."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlmodel import col, select

from openpitrix.db.engine import Database
from openpitrix.outbox.models import OutboxMessage
from tests.conftest import DEFAULT_CHARTS, unique
from tests.e2e.procs import Processes, job, wait_job_status
from tests.helpers import TERMINAL, create_repo, read_sse, wait_job
from tests.support.charts import ChartSpec, write_index
from tests.support.http_repo import RepoServer

pytestmark = pytest.mark.e2e

INDEX = "/index.yaml"
EXPECTED_CATALOG = {
    name: sorted(c.version for c in DEFAULT_CHARTS if c.name == name)
    for name in {c.name for c in DEFAULT_CHARTS}
}


# What an index job that syncs a changed index says, in order.
INDEX_EVENTS = [
    ("job.status", "pending"),
    ("job.status", "working"),
    ("task.status", "working"),
    ("task.progress", "working"),  # fetched index
    ("task.progress", "working"),  # upserted apps
    ("task.status", "successful"),
    ("job.status", "successful"),
]


async def _catalog(http: httpx.AsyncClient, repo_id: str) -> dict[str, list[str]]:
    """{app name: [versions]} of a repo, straight from the API (duplicates would show)."""
    resp = await http.get("/v1/apps", params={"repo_id": repo_id, "limit": 100})
    assert resp.status_code == 200, resp.text
    page = resp.json()
    assert page["total_count"] == len(page["items"])
    catalog: dict[str, list[str]] = {}
    for app in page["items"]:
        versions = (
            await http.get(f"/v1/apps/{app['app_id']}/versions", params={"limit": 100})
        ).json()
        assert versions["total_count"] == len(versions["items"])
        assert app["name"] not in catalog, f"app {app['name']} listed twice"
        catalog[app["name"]] = sorted(v["version"] for v in versions["items"])
    return catalog


async def test_two_worker_processes_share_the_index_jobs(
    procs: Processes, repo_dir: Path, repo_server: RepoServer
) -> None:
    api, first, second = await asyncio.gather(procs.api(), procs.worker(), procs.worker())
    count = 12
    for i in range(count):
        write_index(repo_dir / f"r{i}", [ChartSpec(f"app{i}", "1.0.0")], packages=False)
        repo_server.set_delay(f"/r{i}{INDEX}", 0.3)  # overlapping work for both workers

    async with procs.http(api) as http:
        repos = await asyncio.gather(
            *(create_repo(http, unique(), f"{repo_server.url}/r{i}") for i in range(count))
        )
        jobs = await asyncio.gather(*(wait_job(http, r["index_job_id"]) for r in repos))
        # Three relays (api and both workers) published the events: each job's stream still
        # replays in the order they were written, complete.
        for r in repos:
            replay = await read_sse(http, f"/v1/jobs/{r['index_job_id']}/events")
            assert [(f["event"], f["data"]["status"]) for f in replay] == INDEX_EVENTS, replay

    assert [j["status"] for j in jobs] == ["successful"] * count, jobs
    assert [j["attempts"] for j in jobs] == [1] * count, "a job ran twice"
    executors = [j["executor"] for j in jobs]
    assert set(executors) == {first.executor, second.executor}, executors
    for i in range(count):
        assert repo_server.count(f"/r{i}{INDEX}") == 1, f"repo r{i} fetched more than once"


async def test_worker_killed_mid_index_is_resumed_by_a_fresh_worker(
    procs: Processes, chart_repo: RepoServer
) -> None:
    api, doomed = await asyncio.gather(procs.api(), procs.worker())
    chart_repo.set_delay(INDEX, 4)
    async with procs.http(api) as http:
        repo = await create_repo(http, unique(), chart_repo.url)
        job_id = repo["index_job_id"]
        working = await wait_job_status(http, job_id, {"working"})
        assert working["executor"] == doomed.executor
        doomed.kill()
        assert await doomed.wait(10) == -9
        chart_repo.set_delay(INDEX, 0)
        assert (await job(http, job_id))["status"] == "working"  # nobody finished it

        fresh = await procs.worker()
        # Redelivered once the consumer's ack timer (3 s after the last heartbeat) runs out.
        done = await wait_job(http, job_id, timeout=60)
        assert done["status"] == "successful", done
        assert done["attempts"] == 2, done
        assert done["executor"] == fresh.executor
        assert done["result"]["versions_added"] == 3, done["result"]
        replay = await read_sse(http, f"/v1/jobs/{job_id}/events")
        starts = [f["data"] for f in replay if f["data"]["status"] == "working"]
        starts = [e for e in starts if e["type"] == "job.status"]
        assert [e["data"] for e in starts] == [
            {"executor": doomed.executor, "attempt": 1},
            {"executor": fresh.executor, "attempt": 2},
        ]
        assert replay[-1]["data"]["status"] == "successful"
        assert await _catalog(http, repo["repo_id"]) == EXPECTED_CATALOG


async def test_command_committed_by_a_killed_gateway_is_published_by_a_worker(
    procs: Processes, database_url: str, chart_repo: RepoServer
) -> None:
    lonely = await procs.api(OPENPITRIX_RELAY_ENABLED="false")
    async with procs.http(lonely) as http:
        repo = await create_repo(http, unique(), chart_repo.url)
    job_id = repo["index_job_id"]
    lonely.kill()
    assert await lonely.wait(10) == -9

    # Committed, never published: the command (Nats-Msg-Id = job id) waits in the outbox.
    db = Database(database_url)
    try:
        async with db.session() as session:
            row = (
                await session.execute(
                    select(OutboxMessage).where(col(OutboxMessage.msg_id) == job_id)
                )
            ).scalar_one()
        assert row.sent_at is None
    finally:
        await db.dispose()

    # The worker's relay is the only one left to publish it: this gateway has none either.
    worker, api = await asyncio.gather(procs.worker(), procs.api(OPENPITRIX_RELAY_ENABLED="false"))
    async with procs.http(api) as http:
        done = await wait_job(http, job_id, timeout=60)
        assert done["status"] == "successful", done
        assert done["attempts"] == 1
        assert done["executor"] == worker.executor
        replay = await read_sse(http, f"/v1/jobs/{job_id}/events")
        assert [(f["event"], f["data"]["status"]) for f in replay] == INDEX_EVENTS, replay
        assert await _catalog(http, repo["repo_id"]) == EXPECTED_CATALOG


async def test_job_stream_resumes_after_a_dropped_connection(
    procs: Processes, chart_repo: RepoServer
) -> None:
    api, _ = await asyncio.gather(procs.api(), procs.worker())
    chart_repo.set_delay(INDEX, 3)
    async with procs.http(api) as http:
        repo = await create_repo(http, unique(), chart_repo.url)
        job_id = repo["index_job_id"]
        path = f"/v1/jobs/{job_id}/events"

        before = await read_sse(http, path, max_events=2)  # then the connection is dropped
        assert len(before) == 2
        assert (await job(http, job_id))["status"] not in TERMINAL, "dropped too late"

        after = await read_sse(http, path, last_event_id=before[-1]["id"], timeout=60)
        assert after, "nothing after the resume point"
        last = after[-1]["data"]
        assert last["type"] == "job.status", last
        assert last["status"] == "successful", last

        full = await read_sse(http, path, timeout=30)

    ids = [f["id"] for f in before + after]
    assert ids == sorted(set(ids)), f"ids not strictly increasing: {ids}"
    assert ids == [f["id"] for f in full], "the resumed reads differ from a full replay"
    assert [f["data"]["id"] for f in before + after] == [f["data"]["id"] for f in full]


async def test_sigterm_drains_the_in_flight_index_job(
    procs: Processes, chart_repo: RepoServer
) -> None:
    api, draining = await asyncio.gather(procs.api(), procs.worker())
    chart_repo.set_delay(INDEX, 2)
    async with procs.http(api) as http:
        repo = await create_repo(http, unique(), chart_repo.url)
        job_id = repo["index_job_id"]
        await wait_job_status(http, job_id, {"working"})
        draining.terminate()
        # drain_seconds is 5: the fetch (2 s) finishes inside it, then the process stops.
        assert await draining.wait(5 + 5) == 0
        assert "draining 1 in-flight commands" in draining.log()

        if (await job(http, job_id))["status"] not in TERMINAL:
            await procs.worker()  # it was given back (nak): another replica finishes it
        done = await wait_job(http, job_id, timeout=60)
        assert done["status"] == "successful", done
        assert done["attempts"] <= 2, done
        assert await _catalog(http, repo["repo_id"]) == EXPECTED_CATALOG


async def test_sigterm_gives_back_a_command_that_outlasts_the_drain_period(
    procs: Processes, chart_repo: RepoServer
) -> None:
    # One slot, busy with a fetch far longer than the 1 s grace period: the worker must not
    # wait for it, but nak it at the end of the grace period and exit.
    api, draining = await asyncio.gather(
        procs.api(), procs.worker(concurrency=1, OPENPITRIX_WORKER__DRAIN_SECONDS="1")
    )
    chart_repo.set_delay(INDEX, 15)
    async with procs.http(api) as http:
        repo = await create_repo(http, unique(), chart_repo.url)
        job_id = repo["index_job_id"]
        await wait_job_status(http, job_id, {"working"})
        loop = asyncio.get_running_loop()
        signalled = loop.time()
        draining.terminate()
        assert await draining.wait(10) == 0
        assert loop.time() - signalled < 5, "the worker waited for the handler, not the grace"
        chart_repo.set_delay(INDEX, 0)
        assert (await job(http, job_id))["status"] == "working"

        successor = await procs.worker()
        done = await wait_job(http, job_id, timeout=60)
        assert done["status"] == "successful", done
        assert done["attempts"] == 2, done
        assert done["executor"] == successor.executor
        assert await _catalog(http, repo["repo_id"]) == EXPECTED_CATALOG
