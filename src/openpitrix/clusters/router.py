"""Cluster routes: deploy, read, and lifecycle actions (each answers 202 with its job)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from openpitrix import idempotency
from openpitrix.api.deps import Filter, ListDep, ReadSessionDep, SessionDep
from openpitrix.api.errors import ERROR_RESPONSES
from openpitrix.clusters import service
from openpitrix.clusters.models import Cluster
from openpitrix.clusters.schemas import (
    ClusterCreate,
    ClusterJobAccepted,
    ClusterPage,
    ClusterRead,
    ClusterStatus,
    ClusterUpdate,
    NodePage,
    ReleaseDetail,
    ReleasePage,
    RollbackRequest,
    UpdateEnvRequest,
    UpgradeRequest,
)
from openpitrix.iam.access import Access
from openpitrix.iam.deps import AuthenticatedRoute, CanReadClusters, CanWriteClusters
from openpitrix.jobs.models import Job

router = APIRouter(
    prefix="/v1/clusters",
    tags=["clusters"],
    responses=ERROR_RESPONSES,
    route_class=AuthenticatedRoute,
)


@dataclass(frozen=True)
class Idempotency:
    key: str | None
    route: str  # method and path: one key answers one request


def idempotency_of(
    request: Request,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=200,
            description="Send the same key when retrying: the first answer is replayed and "
            "nothing is done twice. Keys are per user; reusing one for another request is a "
            "422.",
        ),
    ] = None,
) -> Idempotency:
    return Idempotency(key=key, route=f"{request.method} {request.url.path}")


IdempotencyDep = Annotated[Idempotency, Depends(idempotency_of)]


def _accepted(response: Response, cluster_id: str, job_id: str) -> ClusterJobAccepted:
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return ClusterJobAccepted(cluster_id=cluster_id, job_id=job_id)


async def _once(
    session: AsyncSession,
    access: Access,
    idem: Idempotency,
    body: BaseModel | None,
    response: Response,
    act: Callable[[], Awaitable[tuple[Cluster, Job]]],
) -> ClusterJobAccepted:
    """Run `act` once per Idempotency-Key (when one is given)."""
    key = idem.key
    if key is not None:
        replay = await idempotency.reserve(session, access.owner, key, idem.route, body)
        if replay is not None:
            accepted = ClusterJobAccepted.model_validate(replay.body)
            response.headers["Idempotent-Replayed"] = "true"
            return _accepted(response, accepted.cluster_id, accepted.job_id)
    cluster, job = await act()
    result = _accepted(response, cluster.cluster_id, job.job_id)
    if key is not None:
        await idempotency.record(session, access.owner, key, status.HTTP_202_ACCEPTED, result)
    return result


@router.post("", status_code=status.HTTP_202_ACCEPTED, operation_id="create_cluster")
async def create_cluster(
    data: ClusterCreate,
    access: CanWriteClusters,
    session: SessionDep,
    response: Response,
    idem: IdempotencyDep,
) -> ClusterJobAccepted:
    """Deploy an app version onto a runtime. The runtime must be eligible (its provider among
    the repo's providers, its labels matching the repo's selectors: 409 `runtime_not_eligible`
    otherwise). Follow the job at `/v1/jobs/{job_id}/events`."""
    return await _once(
        session,
        access,
        idem,
        data,
        response,
        lambda: service.create_cluster(session, data, access),
    )


@router.get("", operation_id="list_clusters")
async def list_clusters(
    access: CanReadClusters,
    session: ReadSessionDep,
    query: ListDep,
    app_id: Filter = None,
    version_id: Filter = None,
    runtime_id: Filter = None,
    status: Annotated[list[ClusterStatus] | None, Query()] = None,
    owner: Filter = None,
) -> ClusterPage:
    """Clusters you may see. Ceased ones show only with `status=ceased`."""
    filters = service.ClusterFilters(
        app_id=app_id or (),
        version_id=version_id or (),
        runtime_id=runtime_id or (),
        status=status or (),
        owner=owner or (),
    )
    total, items = await service.list_clusters(session, query, access, filters)
    return ClusterPage(total_count=total, items=items)


@router.get("/{cluster_id}", operation_id="get_cluster")
async def get_cluster(
    cluster_id: str, access: CanReadClusters, session: ReadSessionDep
) -> ClusterRead:
    """A cluster with its roles (workloads) and nodes (pods) as last described."""
    return service.cluster_read(await service.get_cluster(session, cluster_id, access))


@router.get("/{cluster_id}/nodes", operation_id="list_cluster_nodes")
async def list_nodes(cluster_id: str, access: CanReadClusters, session: ReadSessionDep) -> NodePage:
    nodes = service.cluster_read(await service.get_cluster(session, cluster_id, access)).nodes
    return NodePage(total_count=len(nodes), items=nodes)


@router.get("/{cluster_id}/releases", operation_id="list_cluster_releases")
async def list_releases(
    cluster_id: str, access: CanReadClusters, session: ReadSessionDep
) -> ReleasePage:
    """The cluster's revisions, newest first: what `rollback {revision}` can return to."""
    await service.get_cluster(session, cluster_id, access)
    rows = await service.releases_of(session, cluster_id)
    items = [service.release_read(r) for r in reversed(rows)]
    return ReleasePage(total_count=len(items), items=items)


@router.get("/{cluster_id}/releases/{revision}", operation_id="get_cluster_release")
async def get_release(
    cluster_id: str,
    revision: Annotated[int, Path(ge=1, le=2**31 - 1)],
    access: CanReadClusters,
    session: ReadSessionDep,
) -> ReleaseDetail:
    """One revision with the objects it applied, as rendered (Secret values redacted)."""
    row = await service.get_release(session, cluster_id, revision, access)
    return service.release_detail(row)


@router.patch("/{cluster_id}", operation_id="update_cluster")
async def update_cluster(
    cluster_id: str, data: ClusterUpdate, access: CanWriteClusters, session: SessionDep
) -> ClusterRead:
    return service.cluster_read(await service.update_cluster(session, cluster_id, data, access))


@router.delete("/{cluster_id}", status_code=status.HTTP_202_ACCEPTED, operation_id="delete_cluster")
async def delete_cluster(
    cluster_id: str, access: CanWriteClusters, session: SessionDep, response: Response
) -> ClusterJobAccepted:
    """Delete every object of the cluster (a job); the record stays as `deleted` until ceased."""
    cluster, job = await service.start_action(session, cluster_id, "delete", access)
    return _accepted(response, cluster.cluster_id, job.job_id)


@router.post(
    "/{cluster_id}/actions/upgrade",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="upgrade_cluster",
)
async def upgrade(
    cluster_id: str,
    data: UpgradeRequest,
    access: CanWriteClusters,
    session: SessionDep,
    response: Response,
    idem: IdempotencyDep,
) -> ClusterJobAccepted:
    """Deploy another version of the same app as a new revision; objects that left the chart
    are pruned."""
    return await _once(
        session,
        access,
        idem,
        data,
        response,
        lambda: service.start_action(
            session, cluster_id, "upgrade", access, version_id=data.version_id, values=data.values
        ),
    )


@router.post(
    "/{cluster_id}/actions/rollback",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="rollback_cluster",
)
async def rollback(
    cluster_id: str,
    data: RollbackRequest,
    access: CanWriteClusters,
    session: SessionDep,
    response: Response,
    idem: IdempotencyDep,
) -> ClusterJobAccepted:
    """Re-deploy an earlier revision (default: the one before) as a new revision."""
    return await _once(
        session,
        access,
        idem,
        data,
        response,
        lambda: service.start_action(
            session, cluster_id, "rollback", access, revision=data.revision
        ),
    )


@router.post(
    "/{cluster_id}/actions/update-env",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="update_cluster_env",
)
async def update_env(
    cluster_id: str,
    data: UpdateEnvRequest,
    access: CanWriteClusters,
    session: SessionDep,
    response: Response,
    idem: IdempotencyDep,
) -> ClusterJobAccepted:
    """Deploy the same version with changed values as a new revision: `values` merge over the
    deployed revision's (Helm's `--reuse-values`), or replace them with `reset_values`."""
    return await _once(
        session,
        access,
        idem,
        data,
        response,
        lambda: service.start_action(
            session,
            cluster_id,
            "update_env",
            access,
            values=data.values,
            reset_values=data.reset_values,
        ),
    )


@router.post(
    "/{cluster_id}/actions/cease",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="cease_cluster",
)
async def cease(
    cluster_id: str,
    access: CanWriteClusters,
    session: SessionDep,
    response: Response,
    idem: IdempotencyDep,
) -> ClusterJobAccepted:
    """Purge what a deleted cluster left behind and retire its record."""
    return await _once(
        session,
        access,
        idem,
        None,
        response,
        lambda: service.start_action(session, cluster_id, "cease", access),
    )


@router.post(
    "/{cluster_id}/actions/{action}",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="vm_cluster_action",
)
async def vm_action(
    cluster_id: str,
    action: Literal["stop", "start", "resize", "add-nodes", "delete-nodes"],
    access: CanWriteClusters,
    session: SessionDep,
) -> ClusterJobAccepted:
    """Actions of VM providers. A provider without them (kubernetes) answers 409
    `action_unsupported`."""
    return await service.vm_action(session, cluster_id, action.replace("-", "_"), access)
