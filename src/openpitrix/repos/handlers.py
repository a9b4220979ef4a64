"""The repo-manager: deleting a repo's catalog as a job."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix.bus.topology import REPO_MANAGER
from openpitrix.events.publisher import emit_event
from openpitrix.events.schemas import EventType
from openpitrix.jobs import service as jobs
from openpitrix.jobs.commands import JobCommand
from openpitrix.jobs.schemas import ErrorInfo, JobStatus
from openpitrix.repos.models import Repo
from openpitrix.workers.service import Command, Delivery, Manager, WorkerContext

# Marks a repo's apps and versions deleted, returning (apps, versions) changed. The catalog is
# the indexer's; the composition root hands its deleter in, so repos never imports the indexer.
CatalogDeleter = Callable[[AsyncSession, str], Awaitable[tuple[int, int]]]


async def handle_delete(
    delete_catalog: CatalogDeleter, ctx: WorkerContext, delivery: Delivery, command: JobCommand
) -> None:
    job_id = command.job_id
    async with ctx.db.transaction() as session:
        job = await jobs.start_job(session, job_id, ctx.executor)
        if job is None:
            return
        task = (await jobs.tasks_of(session, job_id))[0]
        await jobs.start_task(session, job, task, ctx.executor)
        apps, versions = await delete_catalog(session, job.resource_id)
        await session.execute(
            update(Repo)
            .where(col(Repo.repo_id) == job.resource_id)
            .values(app_count=0, version_count=0)
        )
        result = {"apps_deleted": apps, "versions_deleted": versions}
        jobs.report_progress(
            session, job, task, f"marked {apps} apps and {versions} versions deleted", data=result
        )
        jobs.finish_task(session, job, task, JobStatus.SUCCESSFUL, result=result)
        jobs.finish_job(session, job, JobStatus.SUCCESSFUL, message="repo deleted", result=result)
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


async def give_up(ctx: WorkerContext, delivery: Delivery, code: str, message: str) -> None:
    if not isinstance(delivery.payload, JobCommand):
        return
    job_id = delivery.payload.job_id
    async with ctx.db.transaction() as session:
        job = await jobs.get_job(session, job_id)
        if job.status in (JobStatus.PENDING, JobStatus.WORKING):
            jobs.finish_job(
                session,
                job,
                JobStatus.FAILED,
                message=message,
                error=ErrorInfo(code=code, message=message),
            )


def repo_manager(delete_catalog: CatalogDeleter) -> Manager:
    return Manager(
        name=REPO_MANAGER,
        commands={"delete": Command(JobCommand, partial(handle_delete, delete_catalog))},
        on_give_up=give_up,
    )
