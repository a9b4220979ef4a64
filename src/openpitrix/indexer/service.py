"""Index one repo: fetch, parse, sanity-check, sync the catalog, record the outcome on the job."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix.crypto import SecretBox, SecretError
from openpitrix.db.engine import Database
from openpitrix.db.types import utcnow
from openpitrix.fetch import FetchError
from openpitrix.indexer.sync import SyncCounts, storable, sync_catalog
from openpitrix.jobs import service as jobs
from openpitrix.jobs.models import Job, Task
from openpitrix.jobs.schemas import ErrorInfo, JobStatus
from openpitrix.repos import helm
from openpitrix.repos.models import Repo
from openpitrix.repos.schemas import RepoStatus
from openpitrix.settings import IndexerSettings

log = logging.getLogger(__name__)

INDEX_SHRUNK = "index_shrunk"
REPO_DELETED = "repo_deleted"
SECRET_UNREADABLE = "secret_unreadable"  # noqa: S105 - an error code, not a secret
REPO_GONE = ErrorInfo(code=REPO_DELETED, message="the repo was deleted")


@dataclass(frozen=True)
class RepoSnapshot:
    """What the fetch needs, read in the first transaction so none is held during I/O."""

    repo_id: str
    url: str
    credential: dict[str, str] | None
    etag: str | None
    last_modified: str | None
    owner: str
    owner_path: str
    default_status: str


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


async def _begin(
    db: Database, job_id: str, executor: str, secrets: SecretBox
) -> tuple[RepoSnapshot, bool] | None:
    async with db.transaction() as session:
        job = await jobs.start_job(session, job_id, executor)
        if job is None:
            return None  # already ended: a duplicate delivery
        repo = await session.get(Repo, job.resource_id)
        task = (await jobs.tasks_of(session, job_id))[0]
        await jobs.start_task(session, job, task, executor)
        if repo is None or repo.status == RepoStatus.DELETED:
            _fail(session, job, task, repo, REPO_GONE)
            return None
        try:
            credential = secrets.open(repo.credential_secret) if repo.credential_secret else None
        except SecretError as exc:
            _fail(session, job, task, repo, ErrorInfo(code=SECRET_UNREADABLE, message=str(exc)))
            return None
        snapshot = RepoSnapshot(
            repo_id=repo.repo_id,
            url=repo.url,
            credential=credential,
            etag=repo.index_etag,
            last_modified=repo.index_last_modified,
            owner=repo.owner,
            owner_path=repo.owner_path,
            default_status=repo.app_default_status,
        )
        return snapshot, bool(job.params.get("force"))


async def _lock_running(session: AsyncSession, job_id: str) -> tuple[Job, Task, Repo] | None:
    """Re-read the job under a write lock; None if another delivery already finished it."""
    touched = await session.execute(
        update(Job)
        .where(col(Job.job_id) == job_id, col(Job.status) == JobStatus.WORKING)
        .values(status_time=utcnow())
        .execution_options(synchronize_session=False)
    )
    if touched.rowcount == 0:  # type: ignore[attr-defined]
        return None
    job = await session.get(Job, job_id, populate_existing=True)
    assert job is not None
    repo = (
        await session.execute(
            select(Repo).where(col(Repo.repo_id) == job.resource_id).with_for_update()
        )
    ).scalar_one()
    task = (await jobs.tasks_of(session, job_id))[0]
    return job, task, repo


def _release_repo(repo: Repo, job: Job, status: str, error: str | None) -> None:
    if repo.index_job_id == job.job_id:
        repo.index_job_id = None
    repo.last_index_time = utcnow()
    repo.last_index_status = status
    repo.last_index_error = error


def _fail(session: AsyncSession, job: Job, task: Task, repo: Repo | None, error: ErrorInfo) -> None:
    jobs.finish_task(session, job, task, JobStatus.FAILED, error=error)
    jobs.finish_job(session, job, JobStatus.FAILED, message=error.message, error=error)
    if repo is not None:
        _release_repo(repo, job, "failed", f"{error.code}: {error.message}")


async def fail_index_job(db: Database, job_id: str, error: ErrorInfo) -> None:
    async with db.transaction() as session:
        locked = await _lock_running(session, job_id)
        if locked is None:
            job = await session.get(Job, job_id)
            if job is None or job.status != JobStatus.PENDING:
                return
            # Never started (every delivery failed before the claim): fail it from pending.
            repo = await session.get(Repo, job.resource_id)
            task = (await jobs.tasks_of(session, job_id))[0]
            _fail(session, job, task, repo, error)
            return
        job, task, repo = locked
        _fail(session, job, task, repo, error)


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


async def run_index_job(
    db: Database,
    http: httpx.AsyncClient,
    settings: IndexerSettings,
    secrets: SecretBox,
    job_id: str,
    executor: str,
) -> None:
    started = time.perf_counter()
    begun = await _begin(db, job_id, executor, secrets)
    if begun is None:
        return
    snap, force = begun
    try:
        fetched = await helm.fetch_index(
            http,
            snap.url,
            credential=snap.credential,
            etag=None if force else snap.etag,
            last_modified=None if force else snap.last_modified,
            max_bytes=settings.max_index_bytes,
            timeout=settings.fetch_timeout_seconds,
        )
        parsed = None
        if not fetched.not_modified:
            parsed = await asyncio.to_thread(_parse, fetched.body, snap.url, force=force)
    except FetchError as exc:
        await fail_index_job(db, job_id, ErrorInfo(code=exc.code, message=exc.message))
        return

    async with db.transaction() as session:
        locked = await _lock_running(session, job_id)
        if locked is None:
            return
        job, task, repo = locked
        if repo.status == RepoStatus.DELETED:
            _fail(session, job, task, repo, REPO_GONE)
            return
        result: dict[str, Any] = {"fetch_seconds": round(fetched.elapsed_seconds, 3)}
        if parsed is None:
            jobs.report_progress(session, job, task, "index unchanged (HTTP 304)", progress=90)
            result.update(
                not_modified=True,
                **SyncCounts(
                    apps_unchanged=repo.app_count, versions_unchanged=repo.version_count
                ).as_dict(),
            )
        else:
            size = len(fetched.body)
            jobs.report_progress(
                session,
                job,
                task,
                f"fetched index: {_mb(size)}, {parsed.version_count} versions "
                f"of {len(parsed.charts)} charts",
                progress=40,
                data={
                    "bytes": size,
                    "versions": parsed.version_count,
                    "charts": len(parsed.charts),
                },
            )
            for reason in parsed.skipped[:20]:
                jobs.report_progress(session, job, task, f"skipped entry: {reason}")
            live = repo.version_count
            if not force and live and parsed.version_count < live * (1 - settings.shrink_threshold):
                message = (
                    f"index lists {parsed.version_count} versions but the catalog has {live}: "
                    "refusing to delete the rest (re-index with force to accept it)"
                )
                _fail(session, job, task, repo, ErrorInfo(code=INDEX_SHRUNK, message=message))
                return
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
            result.update(
                not_modified=False,
                bytes=size,
                charts=len(parsed.charts),
                versions=parsed.version_count,
                skipped=len(parsed.skipped),
                **counts.as_dict(),
            )
            repo.app_count, repo.version_count = len(parsed.charts), parsed.version_count
            repo.index_etag = fetched.etag
            repo.index_last_modified = fetched.last_modified
        result["duration_seconds"] = round(time.perf_counter() - started, 3)
        jobs.finish_task(session, job, task, JobStatus.SUCCESSFUL, result=result)
        message = "index unchanged" if parsed is None else "index synced"
        jobs.finish_job(session, job, JobStatus.SUCCESSFUL, message=message, result=result)
        _release_repo(repo, job, "successful", None)
