"""Catalog routes: apps and their versions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from openpitrix.api.deps import Filter, ListDep, ReadSessionDep
from openpitrix.api.errors import ERROR_RESPONSES
from openpitrix.apps import service
from openpitrix.apps.schemas import AppPage, AppRead, AppStatus, AppVersionPage, AppVersionRead
from openpitrix.iam.deps import AuthenticatedRoute, CanReadApps

router = APIRouter(tags=["catalog"], responses=ERROR_RESPONSES, route_class=AuthenticatedRoute)


@router.get("/v1/apps", operation_id="list_apps")
async def list_apps(
    access: CanReadApps,
    session: ReadSessionDep,
    query: ListDep,
    repo_id: Filter = None,
    app_id: Filter = None,
    name: Filter = None,
    status: Annotated[list[AppStatus] | None, Query()] = None,
) -> AppPage:
    """List the apps you may see: those your role's scope covers, and the published apps of
    public repos. Deleted apps show only when asked for with `status=deleted`."""
    total, items = await service.list_apps(
        session,
        query,
        access,
        repo_id=repo_id or (),
        app_id=app_id or (),
        name=name or (),
        status=status or (),
    )
    return AppPage(total_count=total, items=items)


@router.get("/v1/apps/{app_id}", operation_id="get_app")
async def get_app(app_id: str, access: CanReadApps, session: ReadSessionDep) -> AppRead:
    return await service.get_app(session, app_id, access)


@router.get("/v1/apps/{app_id}/versions", operation_id="list_app_versions")
async def list_app_versions(
    app_id: str,
    access: CanReadApps,
    session: ReadSessionDep,
    query: ListDep,
    status: Annotated[list[AppStatus] | None, Query()] = None,
    version: Filter = None,
) -> AppVersionPage:
    """List an app's versions, newest chart first by default."""
    total, items = await service.list_versions(
        session, app_id, query, access, status=status or (), version=version or ()
    )
    return AppVersionPage(total_count=total, items=items)


@router.get("/v1/app-versions/{version_id}", operation_id="get_app_version")
async def get_app_version(
    version_id: str, access: CanReadApps, session: ReadSessionDep
) -> AppVersionRead:
    return await service.get_version(session, version_id, access)
