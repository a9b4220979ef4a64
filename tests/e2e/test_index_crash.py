"""Index tasks run on the repo-indexer's own consumer, apart from the job-manager: an index
worker killed mid-fetch leaves its task to a fresh one, and the job ends once, successful."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import DEFAULT_CHARTS, unique
from tests.e2e.procs import Processes
from tests.helpers import create_repo, read_sse, wait_job
from tests.support.http_repo import RepoServer

pytestmark = pytest.mark.e2e

INDEX = "/index.yaml"


async def _index_task(http: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """The job's index task once a worker runs it."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        tasks = (await http.get(f"/v1/jobs/{job_id}")).json().get("tasks") or []
        if tasks and tasks[0]["status"] == "working":
            task: dict[str, Any] = tasks[0]
            return task
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no worker ran the index task of {job_id}: {tasks}")
        await asyncio.sleep(0.05)


async def test_index_worker_killed_mid_fetch_still_ends_in_one_successful_job(
    procs: Processes, chart_repo: RepoServer
) -> None:
    # The job-manager (and repo-manager) in one process, the index tasks in another.
    api, engine, doomed = await asyncio.gather(
        procs.api(),
        procs.worker(managers=["job-manager", "repo-manager"]),
        procs.worker(managers=["repo-indexer"]),
    )
    chart_repo.set_delay(INDEX, 4)
    async with procs.http(api) as http:
        repo = await create_repo(http, unique(), chart_repo.url)
        job_id = repo["index_job_id"]
        running = await _index_task(http, job_id)
        assert running["executor"] == doomed.executor, running
        doomed.kill()
        assert await doomed.wait(10) == -9
        chart_repo.set_delay(INDEX, 0)
        assert (await http.get(f"/v1/jobs/{job_id}")).json()["status"] == "working"

        fresh = await procs.worker(managers=["repo-indexer"])
        # Redelivered to the fresh worker once the ack timer of the dead one's runs out.
        done = await wait_job(http, job_id, timeout=60)
        assert done["status"] == "successful", done
        ((task),) = done["tasks"]
        assert (task["action"], task["attempts"]) == ("index", 2), task
        assert task["executor"] == fresh.executor, task
        assert done["executor"] == fresh.executor, done
        assert done["result"]["versions"] == 3, done["result"]

        events = await read_sse(http, f"/v1/jobs/{job_id}/events")
        statuses = [e["data"]["status"] for e in events if e["data"]["type"] == "job.status"]
        assert statuses[-1] == "successful", statuses
        assert statuses.count("successful") == 1, statuses
        resumed = [
            e["data"]["data"]
            for e in events
            if e["data"]["type"] == "job.status" and e["data"]["status"] == "working"
        ]
        assert resumed == [
            {"executor": engine.executor, "attempt": 1},
            {"executor": fresh.executor, "attempt": 2},
        ], resumed
        ids = [e["data"]["id"] for e in events]
        assert len(ids) == len(set(ids)), "an event was delivered twice"

        apps = (await http.get("/v1/apps", params={"repo_id": repo["repo_id"]})).json()
        names = sorted(a["name"] for a in apps["items"])
        assert names == sorted({c.name for c in DEFAULT_CHARTS}), names
        versions = 0
        for app in apps["items"]:
            page = (await http.get(f"/v1/apps/{app['app_id']}/versions")).json()
            versions += page["total_count"]
        assert versions == len(DEFAULT_CHARTS)
        shown = (await http.get(f"/v1/repos/{repo['repo_id']}")).json()
        assert (shown["index_job_id"], shown["last_index_status"]) == (None, "successful")
