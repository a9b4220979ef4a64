"""Repo jobs for the job engine: index jobs (their task run by the repo-indexer) and delete jobs
(their task run by the repo-manager). Both are "repo" jobs, so one adapter serves both; it
lives here because indexing needs the indexer's catalog sync, and the composition root
registers it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix.bus.topology import REPO_INDEXER, REPO_MANAGER
from openpitrix.db.types import utcnow
from openpitrix.events.publisher import emit_event
from openpitrix.events.schemas import EventType
from openpitrix.indexer.service import run_delete, run_index
from openpitrix.jobs import service as jobs
from openpitrix.jobs.adapter import ChainMemory, Reporter, SlotGiver
from openpitrix.jobs.models import Job, Task
from openpitrix.jobs.plan import PlannedTask, TaskError
from openpitrix.jobs.schemas import JobStatus
from openpitrix.repos import service as repos
from openpitrix.repos.models import Repo
from openpitrix.workers.service import WorkerContext

INDEX_TASK = "index"
DELETE_TASK = "delete_catalog"
# Which manager runs each task: indexing scales apart from deploying (its own consumer), and
# deleting a catalog stays with the repo-manager that owns repos.
RUNNERS = {INDEX_TASK: REPO_INDEXER, DELETE_TASK: REPO_MANAGER}
PLANS = {repos.INDEX_ACTION: INDEX_TASK, repos.DELETE_ACTION: DELETE_TASK}


class RepoJobs:
    resource_kind = repos.RESOURCE_KIND

    def runner(self, action: str) -> str:
        return RUNNERS[action]

    async def plan(self, session: AsyncSession, job: Job) -> list[list[PlannedTask]]:
        action = PLANS.get(job.action)
        if action is None:
            raise TaskError("unknown_action", f"repo jobs do not {job.action}")
        return [[PlannedTask(action=action)]]

    async def target(self, session: AsyncSession, job: Job) -> str | None:
        return None  # no cap: each repo runs one index job at a time already

    async def run_task(
        self,
        ctx: WorkerContext,
        job: Job,
        task: Task,
        report: Reporter,
        give_back: SlotGiver,
        memory: ChainMemory,
    ) -> dict[str, Any]:
        if task.action == INDEX_TASK:
            return await run_index(ctx, job, task)
        if task.action == DELETE_TASK:
            return await run_delete(ctx, job, task)
        raise TaskError("unknown_action", f"repo jobs have no {task.action} task")

    async def task_succeeded(
        self, session: AsyncSession, job: Job, task: Task, result: dict[str, Any]
    ) -> dict[str, Any]:
        return result  # the task wrote the catalog and the repo in its own transaction

    async def job_ended(self, session: AsyncSession, job: Job, status: JobStatus) -> None:
        if status == JobStatus.SUCCESSFUL:
            # The job shows what its one task counted (and which run it is: jobs.stream).
            counted = next(
                (t.result for t in await jobs.tasks_of(session, job.job_id) if t.result), {}
            )
            job.result = {**counted, "retries": job.run} if job.run else dict(counted)
        if job.action == repos.INDEX_ACTION:
            await _record_index(session, job, status)
        elif job.action == repos.DELETE_ACTION and status == JobStatus.SUCCESSFUL:
            emit_event(
                session,
                type=EventType.RESOURCE_STATUS,
                owner=job.owner,
                owner_path=job.owner_path,
                resource_kind=job.resource_kind,
                resource_id=job.resource_id,
                job_id=job.job_id,
                status="deleted",
                message="repo deleted",
            )

    async def relock(self, session: AsyncSession, job: Job) -> bool:
        if job.action == repos.INDEX_ACTION:
            return await repos.claim_index(session, job.resource_id, job.job_id)
        return True  # a delete holds nothing: the repo is deleted already


async def _record_index(session: AsyncSession, job: Job, status: JobStatus) -> None:
    """Release the repo's index claim (it may be indexed again at once) and record the
    outcome on it."""
    repo = (
        await session.execute(
            select(Repo).where(col(Repo.repo_id) == job.resource_id).with_for_update()
        )
    ).scalar_one_or_none()
    if repo is None:
        return
    if repo.index_job_id == job.job_id:
        repo.index_job_id = None
    repo.last_index_time = utcnow()
    repo.last_index_status = status.value
    repo.last_index_error = (
        f"{job.error_code}: {job.error_message}" if status == JobStatus.FAILED else None
    )
