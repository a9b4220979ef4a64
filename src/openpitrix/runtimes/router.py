"""Runtime, runtime credential and provider routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from openpitrix.api.deps import (
    MAX_FILTER_VALUES,
    Filter,
    LabelFilter,
    ListDep,
    PlatformDep,
    ReadSessionDep,
    SessionDep,
)
from openpitrix.api.errors import ERROR_RESPONSES, ErrorBody
from openpitrix.api.routing import DomainRouter
from openpitrix.iam.access import Op
from openpitrix.iam.deps import AuthenticatedRoute, CanReadRuntimes, CanWriteRuntimes
from openpitrix.providers.deps import ProvidersDep
from openpitrix.runtimes import service
from openpitrix.runtimes.schemas import (
    CredentialCreate,
    CredentialPage,
    CredentialRead,
    CredentialUpdate,
    CredentialValidate,
    CredentialValidation,
    ProviderField,
    ProviderList,
    ProviderRead,
    RuntimeCreate,
    RuntimeDeleted,
    RuntimePage,
    RuntimeRead,
    RuntimeStatus,
    RuntimeUpdate,
    Zones,
)
from openpitrix.runtimes.service import ClusterHooks

router = DomainRouter(responses=ERROR_RESPONSES, route_class=AuthenticatedRoute)
credentials = APIRouter(
    prefix="/v1/runtime-credentials",
    tags=["runtime credentials"],
    route_class=AuthenticatedRoute,
)
runtimes = APIRouter(prefix="/v1/runtimes", tags=["runtimes"], route_class=AuthenticatedRoute)
# Providers are plugins: a name is checked for shape, and an unknown one matches nothing.
ProviderFilter = Annotated[list[ProviderField] | None, Query(max_length=MAX_FILTER_VALUES)]
PROVIDER_RESPONSES: dict[int | str, dict[str, Any]] = {
    502: {"model": ErrorBody, "description": "The provider could not be reached; retry later"}
}


@router.get("/v1/providers", tags=["runtimes"], operation_id="list_providers")
async def list_providers(_: CanReadRuntimes, providers: ProvidersDep) -> ProviderList:
    """Installed provider plugins and what each supports."""
    return ProviderList(
        items=[ProviderRead.model_validate(p.describe()) for p in providers.values()]
    )


@credentials.post(
    "/validate", operation_id="validate_runtime_credential", responses=PROVIDER_RESPONSES
)
async def validate_credential(
    data: CredentialValidate, _: CanWriteRuntimes, platform: PlatformDep, providers: ProvidersDep
) -> CredentialValidation:
    """Check a credential against its provider (for kubernetes: reach the API server and
    authenticate) without storing it."""
    return await service.validate_credential(data, platform.address_policy, providers)


@credentials.post(
    "",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_runtime_credential",
    responses=PROVIDER_RESPONSES,
)
async def create_credential(
    data: CredentialCreate,
    access: CanWriteRuntimes,
    platform: PlatformDep,
    providers: ProvidersDep,
    response: Response,
) -> CredentialRead:
    """Store a credential after checking it with the provider. The content is encrypted and
    never returned. Kubeconfigs must be self-contained (inline certificates or a token; no
    `exec` plugins or file paths)."""
    row = await service.create_credential(
        platform.db, data, access, platform.secrets, platform.address_policy, providers
    )
    response.headers["Location"] = f"/v1/runtime-credentials/{row.credential_id}"
    return service.credential_read(row)


@credentials.get("", operation_id="list_runtime_credentials")
async def list_credentials(
    access: CanReadRuntimes,
    session: ReadSessionDep,
    query: ListDep,
    provider: ProviderFilter = None,
    status: Annotated[list[RuntimeStatus] | None, Query()] = None,
) -> CredentialPage:
    total, items = await service.list_credentials(
        session, query, access, provider=provider or (), status=status or ()
    )
    return CredentialPage(total_count=total, items=items)


@credentials.get("/{credential_id}", operation_id="get_runtime_credential")
async def get_credential(
    credential_id: str, access: CanReadRuntimes, session: ReadSessionDep
) -> CredentialRead:
    return service.credential_read(await service.get_credential(session, credential_id, access))


@credentials.patch(
    "/{credential_id}", operation_id="update_runtime_credential", responses=PROVIDER_RESPONSES
)
async def update_credential(
    credential_id: str,
    data: CredentialUpdate,
    access: CanWriteRuntimes,
    platform: PlatformDep,
    providers: ProvidersDep,
) -> CredentialRead:
    """Rename, or replace the content (checked with the provider first; same endpoint)."""
    row = await service.update_credential(
        platform.db,
        credential_id,
        data,
        access,
        platform.secrets,
        platform.address_policy,
        providers,
    )
    return service.credential_read(row)


@credentials.delete(
    "/{credential_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_runtime_credential",
)
async def delete_credential(
    credential_id: str, access: CanWriteRuntimes, session: SessionDep
) -> Response:
    """Delete a credential no live runtime uses (409 `credential_in_use` otherwise)."""
    await service.delete_credential(session, credential_id, access)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@credentials.get(
    "/{credential_id}/zones", operation_id="list_runtime_zones", responses=PROVIDER_RESPONSES
)
async def list_zones(
    credential_id: str, access: CanReadRuntimes, platform: PlatformDep, providers: ProvidersDep
) -> Zones:
    """Zones the credential reaches (namespaces for kubernetes)."""
    return await service.describe_zones(
        platform.db, credential_id, access, platform.secrets, platform.address_policy, providers
    )


@runtimes.post(
    "",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_runtime",
    responses=PROVIDER_RESPONSES,
)
async def create_runtime(
    data: RuntimeCreate,
    access: CanWriteRuntimes,
    platform: PlatformDep,
    providers: ProvidersDep,
    response: Response,
) -> RuntimeRead:
    """Make a runtime: a zone (namespace) reached through one of your credentials. The zone is
    checked (created with `create_zone`) and marked as this runtime's; a zone another runtime
    holds is a 409 `zone_taken`."""
    row = await service.create_runtime(
        platform.db, data, access, platform.secrets, platform.address_policy, providers
    )
    response.headers["Location"] = f"/v1/runtimes/{row.runtime_id}"
    return service.runtime_read(row)


@runtimes.get("", operation_id="list_runtimes")
async def list_runtimes(
    access: CanReadRuntimes,
    session: ReadSessionDep,
    query: ListDep,
    provider: ProviderFilter = None,
    zone: Filter = None,
    credential_id: Filter = None,
    status: Annotated[list[RuntimeStatus] | None, Query()] = None,
    owner: Filter = None,
    label: LabelFilter = None,
    eligible_for_version: Annotated[
        str | None,
        Query(
            max_length=40,
            description="Only runtimes this app version may be deployed to: provider among "
            "its repo's providers, and for every selector key of the repo a label with one "
            "of the selector's values.",
        ),
    ] = None,
) -> RuntimePage:
    filters = service.RuntimeFilters(
        provider=provider or (),
        zone=zone or (),
        credential_id=credential_id or (),
        status=status or (),
        owner=owner or (),
        label=label or (),
        eligible_for_version=eligible_for_version,
    )
    total, items = await service.list_runtimes(session, query, access, filters)
    return RuntimePage(total_count=total, items=items)


@runtimes.get("/{runtime_id}", operation_id="get_runtime")
async def get_runtime(
    runtime_id: str, access: CanReadRuntimes, session: ReadSessionDep
) -> RuntimeRead:
    return service.runtime_read(await service.get_runtime(session, runtime_id, access))


@runtimes.patch("/{runtime_id}", operation_id="update_runtime")
async def update_runtime(
    runtime_id: str, data: RuntimeUpdate, access: CanWriteRuntimes, session: SessionDep
) -> RuntimeRead:
    """Rename or relabel (labels decide eligibility for new deployments)."""
    return service.runtime_read(await service.update_runtime(session, runtime_id, data, access))


async def cluster_hooks(request: Request) -> ClusterHooks:
    """How a runtime's delete asks the clusters on it (`gateway` puts them on the app's state)."""
    hooks: ClusterHooks = request.app.state.cluster_hooks
    return hooks


@runtimes.delete("/{runtime_id}", operation_id="delete_runtime")
async def delete_runtime(
    runtime_id: str,
    access: CanWriteRuntimes,
    platform: PlatformDep,
    providers: ProvidersDep,
    clusters: Annotated[ClusterHooks, Depends(cluster_hooks)],
    force: Annotated[
        bool, Query(description="Also delete its live clusters, each through a delete job.")
    ] = False,
) -> RuntimeDeleted:
    """Delete the runtime and drop its mark on the namespace; the namespace stays. Live
    clusters on it make this a 409 `runtime_in_use` unless `force`."""
    cluster_access = access.caller.access(Op.CLUSTER_WRITE)

    async def delete_its_clusters(session: AsyncSession, cluster_ids: list[str]) -> list[str]:
        return await clusters.delete(session, cluster_ids, cluster_access)

    row, job_ids = await service.delete_runtime(
        platform.db,
        runtime_id,
        access,
        platform.secrets,
        platform.address_policy,
        providers,
        clusters=clusters,
        before_delete=delete_its_clusters if force else None,
    )
    return RuntimeDeleted(runtime_id=row.runtime_id, status=row.status, cluster_job_ids=job_ids)


router.include_router(credentials)
router.include_router(runtimes)
