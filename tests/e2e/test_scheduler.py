"""The periodic re-index scheduler across replicas: every `repo-indexer` worker process runs it,
yet each due repo gets one job per interval, and index jobs of one repo never overlap."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import unique
from tests.e2e.procs import Processes, job, wait_job_status
from tests.helpers import TERMINAL, create_repo, wait_job
from tests.support.http_repo import RepoServer

pytestmark = pytest.mark.e2e

INTERVAL = 2
WINDOW = 7.0


async def _index_jobs(http: httpx.AsyncClient, repo_id: str) -> list[dict[str, Any]]:
    resp = await http.get(
        "/v1/jobs",
        params={
            "resource_id": repo_id,
            "action": "index_repo",
            "limit": 100,
            "sort_key": "create_time",
            "reverse": False,
        },
    )
    assert resp.status_code == 200, resp.text
    page = resp.json()
    assert page["total_count"] == len(page["items"])
    items: list[dict[str, Any]] = page["items"]
    return items


async def _stop_scheduling(http: httpx.AsyncClient, repo_id: str) -> None:
    """Leave nothing due for the workers of later tests."""
    resp = await http.patch(f"/v1/repos/{repo_id}", json={"index_interval_seconds": 30 * 24 * 3600})
    assert resp.status_code == 200, resp.text


async def test_two_replicas_schedule_one_index_job_per_interval(
    procs: Processes, chart_repo: RepoServer
) -> None:
    api, *_ = await asyncio.gather(procs.api(), procs.worker(), procs.worker())
    async with procs.http(api) as http:
        repo = await create_repo(http, unique(), chart_repo.url, index_interval_seconds=INTERVAL)
        repo_id = repo["repo_id"]
        try:
            await asyncio.sleep(WINDOW)
        finally:
            await _stop_scheduling(http, repo_id)
        # Let whatever was started inside the window end.
        for item in await _index_jobs(http, repo_id):
            if item["status"] not in TERMINAL:
                await wait_job(http, item["job_id"])
        jobs = await _index_jobs(http, repo_id)

    reasons = [j["params"]["reason"] for j in jobs]
    assert jobs[0]["job_id"] == repo["index_job_id"], reasons
    assert reasons[0] == "repo created", reasons
    assert set(reasons[1:]) == {"scheduled"}, reasons
    # About one job per interval over the window, not one per replica per interval.
    assert 3 <= len(jobs) <= 5, [(j["job_id"], j["create_time"], j["executor"]) for j in jobs]
    assert all(j["status"] == "successful" for j in jobs), jobs
    spans = sorted(
        (datetime.fromisoformat(j["start_time"]), datetime.fromisoformat(j["end_time"]))
        for j in jobs
    )
    for (_, ended), (started, _) in itertools.pairwise(spans):
        assert ended <= started, f"index jobs of one repo overlap: {spans}"


async def test_index_requested_twice_while_running_answers_the_same_job(
    procs: Processes, chart_repo: RepoServer
) -> None:
    api, _ = await asyncio.gather(procs.api(), procs.worker())
    async with procs.http(api) as http:
        repo = await create_repo(http, unique(), chart_repo.url)
        created = await wait_job(http, repo["index_job_id"])
        assert created["status"] == "successful", created

        chart_repo.set_delay("/index.yaml", 2)
        # Two requests at once: one starts a job, the other is answered with it.
        first, second = await asyncio.gather(
            http.post(f"/v1/repos/{repo['repo_id']}/index"),
            http.post(f"/v1/repos/{repo['repo_id']}/index"),
        )
        assert (first.status_code, second.status_code) == (202, 202), (first.text, second.text)
        job_id = first.json()["job_id"]
        assert job_id != repo["index_job_id"]
        assert second.json()["job_id"] == job_id
        # Also once a worker runs it (the fetch takes 2 s).
        await wait_job_status(http, job_id, {"working"})
        again = await http.post(f"/v1/repos/{repo['repo_id']}/index")
        assert again.json()["job_id"] == job_id
        assert (await job(http, job_id))["status"] == "working"  # answered while it ran

        done = await wait_job(http, job_id)
        assert done["status"] == "successful", done
        third = await http.post(f"/v1/repos/{repo['repo_id']}/index")
        assert third.json()["job_id"] != job_id  # a finished job is not handed out again
        await wait_job(http, third.json()["job_id"])
        jobs = await _index_jobs(http, repo["repo_id"])
        assert [j["job_id"] for j in jobs] == [repo["index_job_id"], job_id, third.json()["job_id"]]
