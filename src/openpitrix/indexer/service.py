"""The tasks of repo jobs: index a repo (fetch, parse, sanity-check, sync the catalog) and delete
a repo's catalog. The job engine claims, times, cancels and settles them (`indexer.jobs`)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix.crypto import SecretError
from openpitrix.fetch import FetchError
from openpitrix.indexer.sync import SyncCounts, delete_catalog, storable, sync_catalog
from openpitrix.jobs import service as jobs
from openpitrix.jobs.models import Job, Task
from openpitrix.jobs.plan import TaskError
from openpitrix.jobs.schemas import JobStatus
from openpitrix.repos import helm
from openpitrix.repos.models import Repo
from openpitrix.repos.schemas import RepoStatus
from openpitrix.workers.service import WorkerContext

INDEX_SHRUNK = "index_shrunk"
REPO_DELETED = "repo_deleted"
SECRET_UNREADABLE = "secret_unreadable"  # noqa: S105 - an error code, not a secret
JOB_ENDED = "job_ended"


def repo_gone() -> TaskError:
    return TaskError(REPO_DELETED, "the repo was deleted")


@dataclass(frozen=True)
class RepoSnapshot:
    """What the fetch needs, read before it so no transaction is held during I/O."""

    url: str
    credential: dict[str, str] | None
    etag: str | None
    last_modified: str | None


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


async def _snapshot(ctx: WorkerContext, repo_id: str) -> RepoSnapshot:
    async with ctx.db.read_session() as session:
        repo = await session.get(Repo, repo_id)
        if repo is None or repo.status == RepoStatus.DELETED:
            raise repo_gone()
        try:
            credential = (
                ctx.secrets.open(repo.credential_secret) if repo.credential_secret else None
            )
        except SecretError as exc:
            raise TaskError(SECRET_UNREADABLE, str(exc)) from None
        return RepoSnapshot(
            url=repo.url,
            credential=credential,
            etag=repo.index_etag,
            last_modified=repo.index_last_modified,
        )


async def _lock_running(session: AsyncSession, job: Job, task: Task) -> tuple[Job, Task]:
    """The job and task, locked, as long as this run is still theirs: a job ended meanwhile
    (superseded by a changed URL, failed as abandoned) keeps what it has."""
    locked = await jobs.lock_job(session, job.job_id)
    current = await session.get(Task, task.task_id, populate_existing=True)
    if (
        locked is None
        or current is None
        or locked.status != JobStatus.WORKING
        or current.status != JobStatus.WORKING
    ):
        raise TaskError(JOB_ENDED, "the job ended while its task ran")
    return locked, current


async def _lock_repo(session: AsyncSession, repo_id: str) -> Repo:
    repo = (
        await session.execute(select(Repo).where(col(Repo.repo_id) == repo_id).with_for_update())
    ).scalar_one_or_none()
    if repo is None or repo.status == RepoStatus.DELETED:
        raise repo_gone()
    return repo


def _parse(body: bytes, url: str, *, force: bool) -> helm.ParsedIndex:
    """Parse the index and drop what the catalog cannot store; run it in a thread."""
    parsed = storable(helm.parse_index(body, url, allow_empty=force))
    if parsed.version_count == 0 and not force and parsed.skipped:
        message = (
            f"index lists no storable chart versions ({len(parsed.skipped)} entries skipped, "
            f"first: {parsed.skipped[0]})"
        )
        raise FetchError(helm.INDEX_EMPTY, message[:200])
    return parsed


async def run_index(ctx: WorkerContext, job: Job, task: Task) -> dict[str, Any]:
    """Fetch and parse the repo's index outside any transaction, then sync the catalog in one
    transaction of its own. Run again after a crash, the sync converges: the catalog is keyed
    by (repo, name) and (app, version), and a stored ETag turns the refetch into a 304."""
    started = time.perf_counter()
    settings = ctx.settings.indexer
    force = bool(job.params.get("force"))
    snap = await _snapshot(ctx, job.resource_id)
    try:
        fetched = await helm.fetch_index(
            ctx.http,
            snap.url,
            credential=snap.credential,
            etag=None if force else snap.etag,
            last_modified=None if force else snap.last_modified,
            max_bytes=settings.max_index_bytes,
            timeout=settings.fetch_timeout_seconds,
        )
        parsed = None
        size = len(fetched.body)
        if not fetched.not_modified:
            parsed = await asyncio.to_thread(_parse, fetched.body, snap.url, force=force)
            # The body is not needed past the parse: let it go before the catalog sync.
            fetched = dataclasses.replace(fetched, body=b"")
    except FetchError as exc:
        raise TaskError(exc.code, exc.message) from None

    refused: TaskError | None = None
    result: dict[str, Any] = {"fetch_seconds": round(fetched.elapsed_seconds, 3)}
    async with ctx.db.transaction() as session:
        job, task = await _lock_running(session, job, task)
        repo = await _lock_repo(session, job.resource_id)
        if parsed is None:
            jobs.report_progress(session, job, task, "index unchanged (HTTP 304)", progress=90)
            result.update(
                not_modified=True,
                **SyncCounts(
                    apps_unchanged=repo.app_count, versions_unchanged=repo.version_count
                ).as_dict(),
            )
        else:
            synced = await _sync(ctx, session, job, task, repo, parsed, size)
            if isinstance(synced, TaskError):
                refused = synced
            else:
                result.update(
                    not_modified=False,
                    bytes=size,
                    charts=len(parsed.charts),
                    versions=parsed.version_count,
                    skipped=len(parsed.skipped),
                    **synced.as_dict(),
                )
                repo.index_etag = fetched.etag
                repo.index_last_modified = fetched.last_modified
    if refused is not None:
        # After the commit: the steps reported so far stay in the job's stream.
        raise refused
    result["duration_seconds"] = round(time.perf_counter() - started, 3)
    return result


async def _sync(
    ctx: WorkerContext,
    session: AsyncSession,
    job: Job,
    task: Task,
    repo: Repo,
    parsed: helm.ParsedIndex,
    size: int,
) -> SyncCounts | TaskError:
    """Apply the parsed index to the catalog, or refuse an index that shrank too much."""
    jobs.report_progress(
        session,
        job,
        task,
        f"fetched index: {_mb(size)}, {parsed.version_count} versions "
        f"of {len(parsed.charts)} charts",
        progress=40,
        data={"bytes": size, "versions": parsed.version_count, "charts": len(parsed.charts)},
    )
    for reason in parsed.skipped[:20]:
        jobs.report_progress(session, job, task, f"skipped entry: {reason}")
    live = repo.version_count
    force = bool(job.params.get("force"))
    threshold = ctx.settings.indexer.shrink_threshold
    if not force and live and parsed.version_count < live * (1 - threshold):
        message = (
            f"index lists {parsed.version_count} versions but the catalog has {live}: "
            "refusing to delete the rest (re-index with force to accept it)"
        )
        return TaskError(INDEX_SHRUNK, message)
    counts = await sync_catalog(
        session,
        repo_id=repo.repo_id,
        owner=repo.owner,
        owner_path=repo.owner_path,
        default_status=repo.app_default_status,
        index=parsed,
    )
    jobs.report_progress(
        session,
        job,
        task,
        f"upserted {len(parsed.charts)} apps: {counts.apps_added} added, "
        f"{counts.apps_updated} updated, {counts.apps_deleted} deleted; versions "
        f"{counts.versions_added} added, {counts.versions_updated} updated, "
        f"{counts.versions_deleted} deleted, {counts.versions_unchanged} unchanged",
        progress=95,
        data=counts.as_dict(),
    )
    repo.app_count, repo.version_count = len(parsed.charts), parsed.version_count
    return counts


async def run_delete(ctx: WorkerContext, job: Job, task: Task) -> dict[str, Any]:
    """Mark the deleted repo's apps and versions deleted (run again, it marks none)."""
    async with ctx.db.transaction() as session:
        job, task = await _lock_running(session, job, task)
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
    return result
