"""Repo use cases: create, read, list, update, delete, index on demand, validate."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy import ColumnElement, and_, delete, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix import ids
from openpitrix.bus.topology import JOB_MANAGER
from openpitrix.crypto import SecretBox
from openpitrix.db.listing import ListQuery, ListSpec, paginate
from openpitrix.db.rows import get_or_404
from openpitrix.db.types import utcnow
from openpitrix.errors import BadRequest, Conflict, InvalidParameter
from openpitrix.fetch import FetchError
from openpitrix.iam.access import Access
from openpitrix.jobs import service as jobs
from openpitrix.jobs.commands import ADVANCE
from openpitrix.jobs.models import Job
from openpitrix.jobs.schemas import TERMINAL_STATUSES, ErrorInfo, JobStatus
from openpitrix.providers.registry import unknown_provider
from openpitrix.repos import helm
from openpitrix.repos.models import Repo, RepoLabel
from openpitrix.repos.schemas import (
    KeyValue,
    RepoCreate,
    RepoRead,
    RepoStatus,
    RepoUpdate,
    RepoValidate,
    RepoValidation,
    parse_label_filter,
)
from openpitrix.settings import IndexerSettings, Settings

INDEX_ACTION = "index_repo"
DELETE_ACTION = "delete_repo"
RESOURCE_KIND = "repo"
PUBLIC = "public"

# Kinds of rows in repo_labels: ordered labels and selectors, and the providers (so every list
# filter is plain SQL on both databases instead of a JSON query).
LABEL, SELECTOR, PROVIDER = "label", "selector", "provider"

REPO_LIST = ListSpec(
    sort_keys={
        "create_time": col(Repo.create_time),
        "update_time": col(Repo.update_time),
        "status_time": col(Repo.status_time),
        "name": col(Repo.name),
        "type": col(Repo.type),
    },
    default_sort="create_time",
    id_columns=[col(Repo.repo_id)],
    text_columns=[col(Repo.name), col(Repo.description), col(Repo.url)],
)


def repo_read(repo: Repo) -> RepoRead:
    return RepoRead.model_validate(
        {
            **repo.model_dump(exclude={"credential_secret"}),
            "credential_set": repo.credential_secret is not None,
        }
    )


def interval_of(repo: Repo, settings: Settings) -> timedelta:
    return timedelta(
        seconds=repo.index_interval_seconds or settings.indexer.default_interval_seconds
    )


def is_public(repo: Repo) -> bool:
    return repo.visibility == PUBLIC and repo.status != RepoStatus.DELETED


def public_repo_clause() -> ColumnElement[bool]:
    """`is_public` as SQL."""
    return and_(col(Repo.visibility) == PUBLIC, col(Repo.status) != RepoStatus.DELETED)


async def get_repo(session: AsyncSession, repo_id: str, access: Access) -> Repo:
    """A repo the caller may see (theirs by scope, or public)."""
    repo = await get_or_404(session, Repo, repo_id, "repo")
    access.check_visible("repo", repo_id, repo.owner, repo.owner_path, public=is_public(repo))
    return repo


async def get_writable_repo(session: AsyncSession, repo_id: str, access: Access) -> Repo:
    """A live repo the caller may change."""
    repo = await get_or_404(session, Repo, repo_id, "repo")
    access.check_writable("repo", repo_id, repo.owner, repo.owner_path, public=is_public(repo))
    if repo.status == RepoStatus.DELETED:
        raise Conflict(f"repo {repo_id!r} is deleted", code="repo_deleted")
    return repo


async def _ensure_name_free(
    session: AsyncSession, owner: str, name: str, exclude: str | None = None
) -> None:
    stmt = select(col(Repo.repo_id)).where(
        col(Repo.owner) == owner, col(Repo.name) == name, col(Repo.status) != RepoStatus.DELETED
    )
    if exclude:
        stmt = stmt.where(col(Repo.repo_id) != exclude)
    if (await session.execute(stmt.limit(1))).first() is not None:
        raise Conflict(f"a repo named {name!r} already exists", code="repo_name_taken")


def _attr_rows(repo_id: str, kind: str, pairs: Sequence[tuple[str, str]]) -> list[RepoLabel]:
    return [
        RepoLabel(repo_id=repo_id, kind=kind, position=i, key=k, value=v)
        for i, (k, v) in enumerate(pairs)
    ]


async def _replace_attrs(
    session: AsyncSession, repo_id: str, kind: str, pairs: Sequence[tuple[str, str]]
) -> None:
    await session.execute(
        delete(RepoLabel).where(col(RepoLabel.repo_id) == repo_id, col(RepoLabel.kind) == kind)
    )
    session.add_all(_attr_rows(repo_id, kind, pairs))


def _pairs(items: Sequence[KeyValue]) -> list[tuple[str, str]]:
    return [(i.key, i.value) for i in items]


async def create_repo(
    session: AsyncSession,
    data: RepoCreate,
    *,
    access: Access,
    settings: Settings,
    secrets: SecretBox,
    installed: Collection[str],
) -> tuple[Repo, Job]:
    """The caller owns the new repo."""
    await _ensure_name_free(session, access.owner, data.name)
    now = utcnow()
    repo = Repo(
        repo_id=ids.new_id(ids.REPO),
        name=data.name,
        description=data.description,
        type=data.type,
        url=data.url,
        providers=installed_providers(data.providers, installed),
        labels=[i.model_dump() for i in data.labels],
        selectors=[i.model_dump() for i in data.selectors],
        visibility=data.visibility,
        app_default_status=data.app_default_status,
        credential_secret=secrets.seal(data.credential.to_storage()) if data.credential else None,
        owner=access.owner,
        owner_path=access.owner_path,
        index_interval_seconds=data.index_interval_seconds,
        create_time=now,
        update_time=now,
        status_time=now,
    )
    repo.next_index_time = now + interval_of(repo, settings)
    session.add(repo)
    session.add_all(_attr_rows(repo.repo_id, LABEL, _pairs(data.labels)))
    session.add_all(_attr_rows(repo.repo_id, SELECTOR, _pairs(data.selectors)))
    session.add_all(_attr_rows(repo.repo_id, PROVIDER, [("provider", p) for p in repo.providers]))
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent create took the name between check and insert
        raise Conflict(
            f"a repo named {data.name!r} already exists", code="repo_name_taken"
        ) from exc
    job, _ = await request_index(
        session, repo, force=False, reason="repo created", settings=settings
    )
    return repo, job


@dataclass(frozen=True)
class RepoFilters:
    name: Sequence[str] = ()
    type: Sequence[str] = ()
    visibility: Sequence[str] = ()
    status: Sequence[str] = ()
    provider: Sequence[str] = ()
    label: Sequence[str] = ()
    selector: Sequence[str] = ()
    owner: Sequence[str] = ()


def installed_providers(names: Sequence[str], installed: Collection[str]) -> list[str]:
    """The names, each of an installed provider (400 `unknown_provider` otherwise): a repo's
    apps are for the runtimes of these providers."""
    for name in names:
        if name not in installed:
            raise unknown_provider(name, installed)
    return list(names)


def _attr_match(kind: str, wanted: dict[str, list[str]]) -> list[ColumnElement[bool]]:
    """Every key must match; the values given for one key are alternatives."""
    return [
        exists().where(
            col(RepoLabel.repo_id) == Repo.repo_id,
            col(RepoLabel.kind) == kind,
            col(RepoLabel.key) == key,
            col(RepoLabel.value).in_(values),
        )
        for key, values in wanted.items()
    ]


async def list_repos(
    session: AsyncSession,
    query: ListQuery,
    filters: RepoFilters,
    access: Access,
    installed: Collection[str],
) -> tuple[int, list[RepoRead]]:
    """The caller's repos by scope, and every public one."""
    try:
        labels = parse_label_filter(list(filters.label), "label")
        selectors = parse_label_filter(list(filters.selector), "selector")
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_filter") from exc
    stmt = select(Repo).where(
        or_(
            access.clause(col(Repo.owner), col(Repo.owner_path)),
            public_repo_clause(),
        )
    )
    for column, values in (
        (col(Repo.name), filters.name),
        (col(Repo.type), filters.type),
        (col(Repo.visibility), filters.visibility),
        (col(Repo.owner), filters.owner),
    ):
        if values:
            stmt = stmt.where(column.in_(values))
    # Deleted repos are hidden unless asked for by status.
    statuses = list(filters.status) or [RepoStatus.ACTIVE.value]
    stmt = stmt.where(col(Repo.status).in_(statuses))
    if filters.provider:
        try:
            installed_providers(filters.provider, installed)
        except BadRequest as exc:  # a provider no repo can name is a mistake
            raise InvalidParameter("provider", exc.message) from None
        stmt = stmt.where(*_attr_match(PROVIDER, {"provider": list(filters.provider)}))
    stmt = stmt.where(*_attr_match(LABEL, labels), *_attr_match(SELECTOR, selectors))
    total, rows = await paginate(session, stmt, REPO_LIST, query)
    return total, [repo_read(r) for r in rows]


REINDEX_FIELDS = frozenset({"url", "credential", "providers", "visibility", "type"})
# What the index fetch itself uses: a job already fetching with the old values is stale.
FETCH_FIELDS = frozenset({"url", "credential", "type"})


async def _end_index_job(
    session: AsyncSession, job: Job, status: JobStatus, error: ErrorInfo
) -> None:
    """End an index job from outside the job engine; its running task discards what it
    fetched, since the job is no longer working when it comes to write it."""
    for task in await jobs.tasks_of(session, job.job_id):
        if task.status not in TERMINAL_STATUSES:
            jobs.finish_task(session, job, task, status, error=error)
    jobs.finish_job(session, job, status, message=error.message, error=error)


async def _supersede(session: AsyncSession, job: Job) -> None:
    """Cancel an index job that fetches with settings the repo no longer has."""
    error = ErrorInfo(
        code="repo_changed", message="the repo's url or credential changed while it was indexed"
    )
    await _end_index_job(session, job, JobStatus.CANCELLED, error)


async def update_repo(
    session: AsyncSession,
    repo_id: str,
    data: RepoUpdate,
    *,
    access: Access,
    settings: Settings,
    secrets: SecretBox,
    installed: Collection[str],
) -> tuple[Repo, Job | None]:
    """Change the fields present; re-index when what the catalog depends on changed."""
    repo = await get_writable_repo(session, repo_id, access)
    fields = data.model_fields_set
    # Locked before the repo row is written, in the indexer's order (job, then repo), so a
    # job finishing right now either ends first or sees itself superseded.
    running = (
        await jobs.lock_job(session, repo.index_job_id)
        if repo.index_job_id and fields & FETCH_FIELDS
        else None
    )
    if data.name is not None and data.name != repo.name:
        await _ensure_name_free(session, repo.owner, data.name, exclude=repo.repo_id)
        repo.name = data.name
    new_type = data.type or repo.type
    new_url = data.url or repo.url
    # urlsplit lower-cases the scheme, as create's check does: "HTTP://host" is an http URL.
    if urlsplit(new_url).scheme != new_type:
        raise BadRequest(f"url {new_url!r} does not match type {new_type!r}", code="invalid_url")
    changed: set[str] = set()
    for name in ("type", "url", "visibility", "app_default_status", "description"):
        value = getattr(data, name)
        if name in fields and value is not None and value != getattr(repo, name):
            setattr(repo, name, value)
            changed.add(name)
    if data.providers is not None:
        providers = installed_providers(data.providers, installed)
        if providers != repo.providers:
            repo.providers = providers
            changed.add("providers")
            await _replace_attrs(
                session, repo.repo_id, PROVIDER, [("provider", p) for p in providers]
            )
    if "credential" in fields:
        wanted = data.credential.to_storage() if data.credential else None
        current = secrets.open(repo.credential_secret) if repo.credential_secret else None
        if wanted != current:
            repo.credential_secret = secrets.seal(wanted) if wanted else None
            changed.add("credential")
    for kind, items in ((LABEL, data.labels), (SELECTOR, data.selectors)):
        if items is not None:
            setattr(repo, f"{kind}s", [i.model_dump() for i in items])
            await _replace_attrs(session, repo.repo_id, kind, _pairs(items))
    if "index_interval_seconds" in fields:
        repo.index_interval_seconds = data.index_interval_seconds
        repo.next_index_time = utcnow() + interval_of(repo, settings)
    repo.update_time = utcnow()
    job = None
    if changed & REINDEX_FIELDS:
        if changed & FETCH_FIELDS:
            # Validators of another URL or identity say nothing about the new one.
            repo.index_etag = repo.index_last_modified = None
            if running is not None and running.status == JobStatus.WORKING:
                await _supersede(session, running)
        job, _ = await request_index(
            session, repo, force=False, reason="repo changed", settings=settings
        )
    await session.flush()
    return repo, job


async def request_index(
    session: AsyncSession, repo: Repo, *, force: bool, reason: str, settings: Settings
) -> tuple[Job, bool]:
    """Start an index job unless one is running; returns (job, started_now).

    The claim is a guarded UPDATE on the repo row, so concurrent requests (API calls, scheduler
    replicas) agree on one job: the losers get the running job back.
    """
    if repo.status == RepoStatus.DELETED:
        raise Conflict(f"repo {repo.repo_id!r} is deleted", code="repo_deleted")
    if repo.index_job_id:
        await _release_abandoned(session, repo.index_job_id, settings)
    job_id = ids.new_id(ids.JOB)
    claimed = await claim_index(session, repo.repo_id, job_id)
    await session.refresh(repo)
    if not claimed:
        if repo.index_job_id is None:
            raise Conflict(f"repo {repo.repo_id!r} cannot be indexed now", code="repo_busy")
        return await jobs.get_job(session, repo.index_job_id), False
    job = jobs.add_job(
        session,
        job_id=job_id,
        action=INDEX_ACTION,
        resource_kind=RESOURCE_KIND,
        resource_id=repo.repo_id,
        owner=repo.owner,
        owner_path=repo.owner_path,
        manager=JOB_MANAGER,
        verb=ADVANCE,
        params={"force": force, "reason": reason},
    )
    await session.flush()
    return job, True


async def claim_index(session: AsyncSession, repo_id: str, job_id: str) -> bool:
    """Make `job_id` the repo's one index job, unless another one is running (a guarded
    UPDATE: of concurrent claims, one wins). A retried job claims the repo again this way."""
    finished = select(col(Job.job_id)).where(col(Job.status).in_(TERMINAL_STATUSES))
    claimed = await session.execute(
        update(Repo)
        .where(
            col(Repo.repo_id) == repo_id,
            col(Repo.status) == RepoStatus.ACTIVE,
            or_(col(Repo.index_job_id).is_(None), col(Repo.index_job_id).in_(finished)),
        )
        .values(index_job_id=job_id)
        .execution_options(synchronize_session=False)
    )
    return bool(claimed.rowcount == 1)  # type: ignore[attr-defined]


async def _release_abandoned(session: AsyncSession, job_id: str, settings: Settings) -> None:
    """Fail the repo's running index job if it has been silent too long.

    A worker that dies on a command's last delivery never reports back, and its job would hold
    the repo's claim forever (every later request answering with the dead job).
    """
    stale_before = utcnow() - timedelta(seconds=settings.indexer.job_stale_seconds)
    job = await jobs.lock_job(session, job_id)
    if job is None or job.status in TERMINAL_STATUSES or job.status_time >= stale_before:
        return
    error = ErrorInfo(
        code="job_abandoned",
        message=f"no progress since {job.status_time.isoformat()}: its worker stopped",
    )
    await _end_index_job(session, job, JobStatus.FAILED, error)


async def delete_repo(session: AsyncSession, repo_id: str, access: Access) -> tuple[Repo, Job]:
    """Soft-delete the repo now; a job marks its apps and versions deleted."""
    repo = await get_writable_repo(session, repo_id, access)
    now = utcnow()
    repo.status = RepoStatus.DELETED
    repo.status_time = repo.update_time = now
    repo.next_index_time = None
    job = jobs.add_job(
        session,
        action=DELETE_ACTION,
        resource_kind=RESOURCE_KIND,
        resource_id=repo.repo_id,
        owner=repo.owner,
        owner_path=repo.owner_path,
        manager=JOB_MANAGER,
        verb=ADVANCE,
    )
    await session.flush()
    return repo, job


async def validate_repo(
    http: httpx.AsyncClient, settings: IndexerSettings, data: RepoValidate
) -> RepoValidation:
    """Fetch and parse the index without storing anything."""
    try:
        fetched = await helm.fetch_index(
            http,
            data.url,
            credential=data.credential.to_storage() if data.credential else None,
            max_bytes=settings.max_index_bytes,
            timeout=settings.fetch_timeout_seconds,
        )
        parsed = await asyncio.to_thread(helm.parse_index, fetched.body, data.url)
    except FetchError as exc:
        return RepoValidation(ok=False, error=ErrorInfo(code=exc.code, message=exc.message))
    return RepoValidation(
        ok=True, chart_count=len(parsed.charts), version_count=parsed.version_count
    )
