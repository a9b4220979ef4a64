"""Catalog routes: apps and their versions."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.responses import Response

from openpitrix.api.deps import FilterField, ListParams, PlatformDep, ReadsDep, ReadSessionDep
from openpitrix.api.errors import ERROR_RESPONSES
from openpitrix.api.params import QueryModel
from openpitrix.api.responses import page_response
from openpitrix.api.routing import DomainRouter
from openpitrix.apps import render, service
from openpitrix.apps.models import PackageKind
from openpitrix.apps.schemas import (
    AppPage,
    AppRead,
    AppStatus,
    AppVersionPage,
    AppVersionRead,
    RenderedCluster,
    RenderRequest,
)
from openpitrix.iam.deps import AuthenticatedRoute, CanReadApps

router = DomainRouter(tags=["catalog"], responses=ERROR_RESPONSES, route_class=AuthenticatedRoute)


class AppListParams(ListParams):
    repo_id: FilterField = None
    app_id: FilterField = None
    name: FilterField = None
    status: list[AppStatus] | None = None
    package_kind: list[PackageKind] | None = None


class AppVersionListParams(ListParams):
    status: list[AppStatus] | None = None
    version: FilterField = None
    package_kind: list[PackageKind] | None = None


# The two catalog lists are the hottest reads: their query parameters are read as one model.
_APP_LIST = QueryModel(AppListParams)
_VERSION_LIST = QueryModel(AppVersionListParams)


@router.get(
    "/v1/apps",
    operation_id="list_apps",
    response_model=AppPage,
)
async def list_apps(
    access: CanReadApps,
    reads: ReadsDep,
    params: Annotated[AppListParams, Depends(_APP_LIST)],
) -> Response:
    """List the apps you may see: those your role's scope covers, and the published apps of
    public repos. Deleted apps show only when asked for with `status=deleted`;
    `package_kind=vm` keeps the apps with at least one VM package version."""
    total, items = await service.list_apps(
        reads,
        params.list_query(),
        access,
        **params.filters(),
    )
    return page_response(total, items)


@router.get("/v1/apps/{app_id}", operation_id="get_app")
async def get_app(app_id: str, access: CanReadApps, session: ReadSessionDep) -> AppRead:
    return await service.get_app(session, app_id, access)


@router.get(
    "/v1/apps/{app_id}/versions",
    operation_id="list_app_versions",
    response_model=AppVersionPage,
)
async def list_app_versions(
    app_id: str,
    access: CanReadApps,
    reads: ReadsDep,
    params: Annotated[AppVersionListParams, Depends(_VERSION_LIST)],
) -> Response:
    """List an app's versions, newest chart first by default."""
    total, items = await service.list_versions(
        reads,
        app_id,
        params.list_query(),
        access,
        **params.filters(),
    )
    return page_response(total, items)


@router.get("/v1/app-versions/{version_id}", operation_id="get_app_version")
async def get_app_version(
    version_id: str, access: CanReadApps, session: ReadSessionDep
) -> AppVersionRead:
    return await service.get_version(session, version_id, access)


@router.post("/v1/app-versions/{version_id}/render", operation_id="render_app_version")
async def render_app_version(
    version_id: str,
    body: RenderRequest,
    access: CanReadApps,
    session: ReadSessionDep,
    platform: PlatformDep,
) -> RenderedCluster:
    """The cluster spec a deploy of this VM package version with `conf` would create, without
    creating anything. 422 `invalid_settings` names every setting that does not fit the
    package's config.json; 422 `invalid_package` names what is wrong with the package;
    409 `not_a_vm_package` for a Helm chart version."""
    return await render.render_version(
        session, platform.http, platform.secrets, version_id, access, body.conf
    )
