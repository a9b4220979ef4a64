"""A repo whose index job was abandoned (its worker died on the last delivery and never
reported back) must not stay stuck: the next index request fails the silent job and starts
a new one."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import update
from sqlmodel import col

from openpitrix import ids
from openpitrix.db.engine import Database
from openpitrix.db.types import utcnow
from openpitrix.jobs.models import Job, Task
from openpitrix.repos.models import Repo
from tests.conftest import unique
from tests.helpers import create_repo, wait_job
from tests.support.http_repo import RepoServer


async def _plant_stuck_job(db: Database, repo_id: str, *, silent_for: timedelta) -> str:
    """What a worker killed on its final delivery leaves behind: a working job holding the claim."""
    job_id = ids.new_id(ids.JOB)
    since = utcnow() - silent_for
    async with db.transaction() as session:
        session.add(
            Job(
                job_id=job_id,
                action="index_repo",
                status="working",
                resource_kind="repo",
                resource_id=repo_id,
                executor="dead-host/1",
                attempts=10,
                create_time=since,
                status_time=since,
                start_time=since,
            )
        )
        session.add(
            Task(task_id=ids.new_id(ids.TASK), job_id=job_id, action="index", status="working")
        )
        await session.flush()
        await session.execute(
            update(Repo).where(col(Repo.repo_id) == repo_id).values(index_job_id=job_id)
        )
    return job_id


async def test_silent_job_is_failed_and_a_new_index_starts(
    client: httpx.AsyncClient, chart_repo: RepoServer, db: Database
) -> None:
    repo = await create_repo(client, unique(), chart_repo.url)
    await wait_job(client, repo["index_job_id"])
    stuck = await _plant_stuck_job(db, repo["repo_id"], silent_for=timedelta(hours=1))

    resp = await client.post(f"/v1/repos/{repo['repo_id']}/index")
    assert resp.status_code == 202
    new_job = resp.json()["job_id"]
    assert new_job != stuck
    assert (await wait_job(client, new_job))["status"] == "successful"

    old = (await client.get(f"/v1/jobs/{stuck}")).json()
    assert old["status"] == "failed"
    assert old["error"]["code"] == "job_abandoned"
    assert all(t["status"] == "failed" for t in old["tasks"])


async def test_recently_active_job_keeps_its_claim(
    client: httpx.AsyncClient, chart_repo: RepoServer, db: Database
) -> None:
    repo = await create_repo(client, unique(), chart_repo.url)
    await wait_job(client, repo["index_job_id"])
    running = await _plant_stuck_job(db, repo["repo_id"], silent_for=timedelta(seconds=5))

    resp = await client.post(f"/v1/repos/{repo['repo_id']}/index")
    assert resp.status_code == 202
    assert resp.json()["job_id"] == running
    assert (await client.get(f"/v1/jobs/{running}")).json()["status"] == "working"
