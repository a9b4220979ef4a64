"""Repo jobs on the job engine: an index job can be cancelled (its stalled fetch stops and the
repo may be indexed again at once) and retried, and index or delete commands queued in the form
from before the engine still complete after an upgrade."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlmodel import col

from openpitrix import ids
from openpitrix.bus.topology import REPO_INDEXER, REPO_MANAGER, command_subject
from openpitrix.db.engine import Database
from openpitrix.db.types import utcnow
from openpitrix.jobs import service as jobs
from openpitrix.jobs.commands import JobCommand, handover_id
from openpitrix.jobs.manager import hand_over
from openpitrix.jobs.models import Job, Task
from openpitrix.outbox.models import OutboxMessage
from openpitrix.platform import Platform
from openpitrix.repos.models import Repo
from openpitrix.settings import IndexerSettings, Settings
from openpitrix.workers.service import Delivery, WorkerContext
from tests.conftest import LiveServer, make_settings, unique
from tests.helpers import assert_error, create_repo, wait_job
from tests.support.http_repo import RepoServer

INDEX = "/index.yaml"
STALL = 600.0  # longer than any test: only a cancel ends such a fetch


@pytest.fixture
async def patient(
    database_url: str, nats_url: str, tmp_path: Path, admin_headers: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """A server whose indexer waits for a slow repo far longer than the tests do."""
    settings = make_settings(
        database_url,
        nats_url,
        tmp_path / "patient-data",
        indexer=IndexerSettings(fetch_timeout_seconds=STALL, scheduler_tick_seconds=0.5),
    )
    async with (
        LiveServer(settings) as live,
        httpx.AsyncClient(base_url=live.url, timeout=30, headers=admin_headers) as http,
    ):
        yield http


async def job_of(http: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    resp = await http.get(f"/v1/jobs/{job_id}")
    assert resp.status_code == 200, resp.text
    job: dict[str, Any] = resp.json()
    return job


async def fetching(http: httpx.AsyncClient, job_id: str) -> None:
    """Wait until a worker runs the job's index task (and so fetches the index)."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        tasks = (await job_of(http, job_id))["tasks"]
        if tasks and tasks[0]["status"] == "working":
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} never started fetching: {tasks}")
        await asyncio.sleep(0.05)


async def repo_of(http: httpx.AsyncClient, repo_id: str) -> dict[str, Any]:
    resp = await http.get(f"/v1/repos/{repo_id}")
    assert resp.status_code == 200, resp.text
    repo: dict[str, Any] = resp.json()
    return repo


# ------------------------------------------------------------------------------------- cancel


async def test_cancelled_index_job_stops_its_stalled_fetch_and_the_repo_indexes_again_at_once(
    patient: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    chart_repo.set_delay(INDEX, STALL)
    repo = await create_repo(patient, unique(), chart_repo.url)
    job_id = repo["index_job_id"]
    await fetching(patient, job_id)

    resp = await patient.post(f"/v1/jobs/{job_id}/actions/cancel")
    assert resp.status_code == 202, resp.text
    # The repo server stalls for longer than the test waits: only the cancel ends the fetch.
    job = await wait_job(patient, job_id)
    assert job["status"] == "cancelled", job
    ((task),) = job["tasks"]
    assert (task["action"], task["status"]) == ("index", "cancelled"), task
    shown = await repo_of(patient, repo["repo_id"])
    assert shown["index_job_id"] is None, shown
    assert shown["last_index_status"] == "cancelled", shown
    assert shown["last_index_error"] is None, shown
    assert (shown["app_count"], shown["version_count"]) == (0, 0), shown

    chart_repo.clear_faults()
    again = await patient.post(f"/v1/repos/{repo['repo_id']}/index")
    assert again.status_code == 202, again.text
    new_job = again.json()["job_id"]
    assert new_job != job_id
    assert again.json()["index_job_id"] == new_job
    done = await wait_job(patient, new_job)
    assert done["status"] == "successful", done
    assert done["result"]["versions_added"] == 3, done["result"]
    assert_error(await patient.post(f"/v1/jobs/{job_id}/actions/cancel"), 409, "job_ended")


# -------------------------------------------------------------------------------------- retry


async def test_retried_index_job_runs_again_and_succeeds_once_the_repo_is_fixed(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    chart_repo.set_status(INDEX, 500)
    repo = await create_repo(client, unique(), chart_repo.url)
    job_id = repo["index_job_id"]
    failed = await wait_job(client, job_id)
    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == "repo_http_error", failed
    assert (await repo_of(client, repo["repo_id"]))["index_job_id"] is None

    # Still broken: the retry runs the fetch again and fails again.
    resp = await client.post(f"/v1/jobs/{job_id}/actions/retry")
    assert resp.status_code == 202, resp.text
    again = await wait_job(client, job_id)
    assert again["status"] == "failed", again
    assert chart_repo.count(INDEX, 500) == 2

    chart_repo.clear_faults()
    resp = await client.post(f"/v1/jobs/{job_id}/actions/retry")
    assert resp.status_code == 202, resp.text
    done = await wait_job(client, job_id)
    assert done["status"] == "successful", done
    assert done["error"] is None, done
    assert done["result"]["versions_added"] == 3, done["result"]
    ((task),) = done["tasks"]
    assert (task["status"], task["attempts"]) == ("successful", 3), task
    assert task["result"]["versions_added"] == 3, task
    shown = await repo_of(client, repo["repo_id"])
    assert shown["index_job_id"] is None, shown
    assert (shown["last_index_status"], shown["last_index_error"]) == ("successful", None)
    assert (shown["app_count"], shown["version_count"]) == (2, 3), shown


async def test_failed_index_job_is_not_retried_while_another_index_job_holds_the_repo(
    patient: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    chart_repo.set_status(INDEX, 404)
    repo = await create_repo(patient, unique(), chart_repo.url)
    failed = await wait_job(patient, repo["index_job_id"])
    assert failed["status"] == "failed", failed

    chart_repo.clear_faults()
    chart_repo.set_delay(INDEX, STALL)
    resp = await patient.post(f"/v1/repos/{repo['repo_id']}/index")
    assert resp.status_code == 202, resp.text
    running = resp.json()["job_id"]
    retry = await patient.post(f"/v1/jobs/{failed['job_id']}/actions/retry")
    assert_error(retry, 409, "repo_busy")
    assert (await job_of(patient, failed["job_id"]))["status"] == "failed"

    assert (await patient.post(f"/v1/jobs/{running}/actions/cancel")).status_code == 202
    assert (await wait_job(patient, running))["status"] == "cancelled"
    chart_repo.clear_faults()
    chart_repo.hold(INDEX)  # the retried job cannot end before the repo is looked at
    retry = await patient.post(f"/v1/jobs/{failed['job_id']}/actions/retry")
    assert retry.status_code == 202, retry.text
    assert (await repo_of(patient, repo["repo_id"]))["index_job_id"] == failed["job_id"]
    chart_repo.release(INDEX)
    assert (await wait_job(patient, failed["job_id"]))["status"] == "successful"


# ------------------------------------------------------------- commands queued before upgrade


async def _plant_legacy_job(
    db: Database,
    repo_id: str,
    *,
    action: str,
    task: str,
    manager: str,
    verb: str,
    claimed: bool,
) -> str:
    """A job as the code before the engine created it: its task planned at once, its first
    command sent to the manager that ran the whole job. `claimed`: an old worker had started
    it and died (the command comes back as a redelivery)."""
    async with db.transaction() as session:
        row = await session.get(Repo, repo_id)
        assert row is not None
        job = jobs.add_job(
            session,
            action=action,
            resource_kind="repo",
            resource_id=repo_id,
            owner=row.owner,
            owner_path=row.owner_path,
            manager=manager,
            verb=verb,
            params={"force": True, "reason": "queued before the upgrade"},
            tasks=[jobs.TaskPlan(action=task)],
        )
        await session.flush()
        if action == "index_repo":
            row.index_job_id = job.job_id
        else:
            row.status = "deleted"
        if claimed:
            await session.execute(
                update(Job)
                .where(col(Job.job_id) == job.job_id)
                .values(status="working", executor="old-host/1", attempts=1, start_time=utcnow())
            )
            await session.execute(
                update(Task)
                .where(col(Task.job_id) == job.job_id)
                .values(status="working", executor="old-host/1", attempts=1)
            )
        return job.job_id


@pytest.mark.parametrize("claimed", [False, True], ids=["queued", "claimed-by-a-dead-worker"])
async def test_index_command_queued_before_the_engine_still_completes(
    client: httpx.AsyncClient, chart_repo: RepoServer, db: Database, claimed: bool
) -> None:
    repo = await create_repo(client, unique(), chart_repo.url)
    assert (await wait_job(client, repo["index_job_id"]))["status"] == "successful"

    job_id = await _plant_legacy_job(
        db,
        repo["repo_id"],
        action="index_repo",
        task="index",
        manager=REPO_INDEXER,
        verb="index",
        claimed=claimed,
    )
    done = await wait_job(client, job_id)
    assert done["status"] == "successful", done
    ((task),) = done["tasks"]
    assert (task["action"], task["status"]) == ("index", "successful"), task
    # Forced, so the whole index was read again; nothing in it changed.
    assert done["result"]["not_modified"] is False, done["result"]
    assert done["result"]["versions_unchanged"] == 3, done["result"]
    shown = await repo_of(client, repo["repo_id"])
    assert shown["index_job_id"] is None, shown
    assert shown["last_index_status"] == "successful", shown


@pytest.mark.parametrize("claimed", [False, True], ids=["queued", "claimed-by-a-dead-worker"])
async def test_delete_command_queued_before_the_engine_still_completes(
    client: httpx.AsyncClient, chart_repo: RepoServer, db: Database, claimed: bool
) -> None:
    repo = await create_repo(client, unique(), chart_repo.url)
    assert (await wait_job(client, repo["index_job_id"]))["status"] == "successful"

    job_id = await _plant_legacy_job(
        db,
        repo["repo_id"],
        action="delete_repo",
        task="delete_catalog",
        manager=REPO_MANAGER,
        verb="delete",
        claimed=claimed,
    )
    done = await wait_job(client, job_id)
    assert done["status"] == "successful", done
    ((task),) = done["tasks"]
    assert task["result"] == {"apps_deleted": 2, "versions_deleted": 3}, task
    assert done["result"] == task["result"]
    apps = (await client.get("/v1/apps", params={"repo_id": repo["repo_id"]})).json()
    assert apps["total_count"] == 0, apps
    shown = await repo_of(client, repo["repo_id"])
    assert (shown["status"], shown["app_count"], shown["version_count"]) == ("deleted", 0, 0)


async def test_an_old_form_command_coming_back_hands_its_job_over_once(
    settings: Settings, db: Database
) -> None:
    # No relay and no job-manager here: the hand-over's advance stays in the outbox.
    job_id = ids.new_id(ids.JOB)
    async with db.transaction() as session:
        session.add(
            Job(
                job_id=job_id,
                action="index_repo",
                resource_kind="repo",
                resource_id="r-handover",
                owner="usr-handover",
                owner_path="/usr-handover",
            )
        )
        session.add(Task(task_id=ids.new_id(ids.TASK), job_id=job_id, action="index"))
    platform = Platform(settings, role="worker")
    await platform.start(relay=False)
    try:
        ctx = WorkerContext(
            settings=settings,
            db=platform.db,
            js=platform.js,
            http=platform.http,
            executor="test/handover",
        )
        command = JobCommand(job_id=job_id)

        async def beat() -> None:
            return None

        for delivered in (1, 2):  # the second: its ack was lost, so it came back
            delivery = Delivery(
                subject=command_subject(REPO_INDEXER, "index"),
                verb="index",
                payload=command,
                num_delivered=delivered,
                last_attempt=False,
                heartbeat=beat,
            )
            await hand_over(ctx, delivery, command)
    finally:
        await platform.stop()
    async with db.transaction() as session:
        sent = (
            (
                await session.execute(
                    select(OutboxMessage).where(col(OutboxMessage.msg_id) == handover_id(job_id))
                )
            )
            .scalars()
            .all()
        )
        assert [m.subject for m in sent] == ["op.cmd.job-manager.advance"], sent
        # Leave nothing runnable for later tests' workers: the advance finds the job ended.
        await session.execute(update(Job).where(col(Job.job_id) == job_id).values(status="failed"))
