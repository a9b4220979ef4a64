"""Repo routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, Query, Response, status

from openpitrix.api.deps import (
    Filter,
    LabelFilter,
    ListDep,
    PlatformDep,
    ReadSessionDep,
    SessionDep,
    SettingsDep,
)
from openpitrix.api.errors import ERROR_RESPONSES
from openpitrix.api.routing import DomainRouter
from openpitrix.iam.deps import AuthenticatedRoute, CanReadRepos, CanWriteRepos
from openpitrix.providers.deps import ProvidersDep
from openpitrix.repos import service
from openpitrix.repos.schemas import (
    IndexRequest,
    ProviderName,
    RepoCreate,
    RepoCreated,
    RepoJobAccepted,
    RepoPage,
    RepoRead,
    RepoStatus,
    RepoType,
    RepoUpdate,
    RepoValidate,
    RepoValidation,
    Visibility,
)
from openpitrix.repos.service import validate_repo

router = DomainRouter(
    prefix="/v1/repos", tags=["repos"], responses=ERROR_RESPONSES, route_class=AuthenticatedRoute
)


@router.post("", status_code=status.HTTP_201_CREATED, operation_id="create_repo")
async def create_repo(
    data: RepoCreate,
    access: CanWriteRepos,
    session: SessionDep,
    settings: SettingsDep,
    platform: PlatformDep,
    providers: ProvidersDep,
    response: Response,
) -> RepoCreated:
    """Create a repo (you own it) and start its first index job; follow it at
    `/v1/jobs/{index_job_id}/events`. Names are unique among your live repos."""
    repo, job = await service.create_repo(
        session,
        data,
        access=access,
        settings=settings,
        secrets=platform.secrets,
        installed=providers,
    )
    response.headers["Location"] = f"/v1/repos/{repo.repo_id}"
    read = service.repo_read(repo)
    return RepoCreated.model_validate({**read.model_dump(), "index_job_id": job.job_id})


@router.get("", operation_id="list_repos")
async def list_repos(
    access: CanReadRepos,
    session: ReadSessionDep,
    query: ListDep,
    providers: ProvidersDep,
    name: Filter = None,
    type: Annotated[list[RepoType] | None, Query()] = None,
    visibility: Annotated[list[Visibility] | None, Query()] = None,
    status: Annotated[list[RepoStatus] | None, Query()] = None,
    provider: Annotated[list[ProviderName] | None, Query()] = None,
    owner: Filter = None,
    label: LabelFilter = None,
    selector: LabelFilter = None,
) -> RepoPage:
    """List the repos you may see (yours by your role's scope, and every public one).
    `label`/`selector` filters: every key given must match, and several values
    of one key are alternatives (`label=env=prod&label=env=dev&label=tier=web`). Deleted repos
    show only when asked for with `status=deleted`."""
    filters = service.RepoFilters(
        name=name or (),
        type=type or (),
        visibility=visibility or (),
        status=status or (),
        provider=provider or (),
        owner=owner or (),
        label=label or (),
        selector=selector or (),
    )
    total, items = await service.list_repos(session, query, filters, access, providers)
    return RepoPage(total_count=total, items=items)


@router.post("/validate", operation_id="validate_repo")
async def validate(
    data: RepoValidate, _: CanWriteRepos, platform: PlatformDep, settings: SettingsDep
) -> RepoValidation:
    """Check that a repo URL is reachable and serves a parseable index, without storing it."""
    return await validate_repo(platform.http, settings.indexer, data)


@router.get("/{repo_id}", operation_id="get_repo")
async def get_repo(repo_id: str, access: CanReadRepos, session: ReadSessionDep) -> RepoRead:
    return service.repo_read(await service.get_repo(session, repo_id, access))


@router.patch("/{repo_id}", operation_id="update_repo")
async def update_repo(
    repo_id: str,
    data: RepoUpdate,
    access: CanWriteRepos,
    session: SessionDep,
    settings: SettingsDep,
    platform: PlatformDep,
    providers: ProvidersDep,
) -> RepoRead:
    """Change the fields present. A change of url, credential, providers or visibility starts a
    re-index; `index_job_id` in the answer names it."""
    repo, _ = await service.update_repo(
        session,
        repo_id,
        data,
        access=access,
        settings=settings,
        secrets=platform.secrets,
        installed=providers,
    )
    return service.repo_read(repo)


@router.delete("/{repo_id}", status_code=status.HTTP_202_ACCEPTED, operation_id="delete_repo")
async def delete_repo(
    repo_id: str, access: CanWriteRepos, session: SessionDep, response: Response
) -> RepoJobAccepted:
    """Soft-delete a repo; a job marks its apps and versions deleted."""
    repo, job = await service.delete_repo(session, repo_id, access)
    response.headers["Location"] = f"/v1/jobs/{job.job_id}"
    return RepoJobAccepted.model_validate(
        {**service.repo_read(repo).model_dump(), "job_id": job.job_id}
    )


@router.post("/{repo_id}/index", status_code=status.HTTP_202_ACCEPTED, operation_id="index_repo")
async def index_repo(
    repo_id: str,
    access: CanWriteRepos,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    data: Annotated[IndexRequest | None, Body()] = None,
) -> RepoJobAccepted:
    """Re-index now. If an index job is already running, answers with that job instead."""
    repo = await service.get_writable_repo(session, repo_id, access)
    job, _ = await service.request_index(
        session, repo, force=bool(data and data.force), reason="requested", settings=settings
    )
    response.headers["Location"] = f"/v1/jobs/{job.job_id}"
    return RepoJobAccepted.model_validate(
        {**service.repo_read(repo).model_dump(), "job_id": job.job_id}
    )
