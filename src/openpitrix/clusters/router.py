"""Cluster routes: deploy, read, and lifecycle actions (each answers 202 with its job)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Body, Depends, Header, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from openpitrix import idempotency
from openpitrix.api.deps import Filter, ListDep, PlatformDep, ReadSessionDep, SessionDep
from openpitrix.api.errors import ERROR_RESPONSES, ErrorBody
from openpitrix.api.routing import DomainRouter
from openpitrix.clusters import service
from openpitrix.clusters.creates import Deploy, Deploys
from openpitrix.clusters.models import Cluster
from openpitrix.clusters.schemas import (
    DRY_RUN_DESCRIPTION,
    ActionOptions,
    AddNodesRequest,
    ClusterCreate,
    ClusterJobAccepted,
    ClusterPage,
    ClusterRead,
    ClusterStatus,
    ClusterUpdate,
    DeleteNodesRequest,
    NodePage,
    ReleaseDetail,
    ReleasePage,
    ResizeRequest,
    RollbackRequest,
    UpdateEnvRequest,
    UpgradeRequest,
)
from openpitrix.db.engine import Database
from openpitrix.iam.access import Access
from openpitrix.iam.deps import AuthenticatedRoute, CanReadClusters, CanWriteClusters
from openpitrix.jobs.models import Job
from openpitrix.providers.base import Preview
from openpitrix.providers.deps import ProvidersDep
from openpitrix.providers.registry import Providers

router = DomainRouter(
    prefix="/v1/clusters",
    tags=["clusters"],
    responses=ERROR_RESPONSES,
    route_class=AuthenticatedRoute,
)


@dataclass(frozen=True)
class Idempotency:
    key: str | None
    route: str  # method and path: one key answers one request


async def idempotency_of(
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

# Every action answers 202 with its job, or with `dry_run` 200 with the preview.
ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    status.HTTP_200_OK: {
        "model": Preview,
        "description": "With `dry_run`: what the action would do; nothing was done or written. "
        "It fails as the action would (409 `cluster_busy`, `cluster_state`, "
        "`action_unsupported`, `no_such_role`, `no_such_node`, `last_nodes`, "
        "`insufficient_resources`; 422 `render_failed`, `apply_failed`; 409 "
        "`preview_unsupported` when the provider cannot tell).",
    },
    status.HTTP_202_ACCEPTED: {"description": "The action's job was started."},
    status.HTTP_502_BAD_GATEWAY: {
        "model": ErrorBody,
        "description": "With `dry_run`: the provider could not be reached; retry later",
    },
}


@dataclass(frozen=True)
class Actions:
    """What an action route opens itself: a write transaction for the action, a read session
    and the preview tools for a preview (no SessionDep: a preview must not hold the write
    lock while it talks to the provider)."""

    db: Database
    tools: service.PreviewTools
    # At most `http.cluster_write_concurrency` actions in their transactions at once
    # (PostgreSQL).
    gate: asyncio.Semaphore
    # Deploys go through the process's group commit (clusters.creates).
    deploys: Deploys

    @property
    def providers(self) -> Providers:
        return self.tools.providers

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """The action's write transaction, once its turn comes. A burst of actions runs a few
        at a time, in arrival order: with all of them at once (PostgreSQL has no write lock
        to queue them), each of their round trips, the relay's and the event streams' waited
        for a turn of an event loop crowded by all the others, so every 202 came late and
        each job's first event seconds after it. SQLite's write lock lets one in at a time
        already; a second queue in front of it only made the early POSTs wait longer.
        (Deploys do not come here: they are written together, `deploys`.)"""
        gate = self.gate if self.db.dialect != "sqlite" else contextlib.nullcontext()
        async with gate, self.db.transaction() as session:
            yield session


async def actions_of(request: Request, platform: PlatformDep, providers: ProvidersDep) -> Actions:
    return Actions(
        gate=request.app.state.cluster_writes,
        deploys=request.app.state.cluster_deploys,
        db=platform.db,
        tools=service.PreviewTools(
            http=platform.http,
            secrets=platform.secrets,
            policy=platform.address_policy,
            providers=providers,
        ),
    )


ActionsDep = Annotated[Actions, Depends(actions_of)]


async def _preview(
    platform: Actions, act: Callable[[AsyncSession, service.PreviewTools], Awaitable[Preview]]
) -> JSONResponse:
    """Run a preview on a read session: it writes nothing."""
    tools = platform.tools
    async with platform.db.read_session() as session:
        preview = await act(session, tools)
    return JSONResponse(preview.model_dump(mode="json"), status_code=status.HTTP_200_OK)


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


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="create_cluster",
    response_model=ClusterJobAccepted,
    responses=ACTION_RESPONSES,
)
async def create_cluster(
    data: ClusterCreate,
    access: CanWriteClusters,
    platform: ActionsDep,
    response: Response,
    idem: IdempotencyDep,
) -> ClusterJobAccepted | JSONResponse:
    """Deploy an app version onto a runtime. The runtime must be eligible (its provider among
    the repo's providers, its labels matching the repo's selectors: 409 `runtime_not_eligible`
    otherwise). Follow the job at `/v1/jobs/{job_id}/events`. With `dry_run`, 200 with what
    would be created."""
    if data.dry_run:
        return await _preview(
            platform, lambda session, tools: service.preview_create(session, data, access, tools)
        )
    deployed = await platform.deploys.submit(
        Deploy(data, access, platform.providers, key=idem.key, route=idem.route)
    )
    if deployed.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return _accepted(response, deployed.cluster_id, deployed.job_id)


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
    *,
    providers: ProvidersDep,
) -> ClusterPage:
    """Clusters you may see. Ceased ones show only with `status=ceased`. A VM cluster's values
    hide its package's password settings."""
    filters = service.ClusterFilters(
        app_id=app_id or (),
        version_id=version_id or (),
        runtime_id=runtime_id or (),
        status=status or (),
        owner=owner or (),
    )
    total, items = await service.list_clusters(session, query, access, filters, providers)
    return ClusterPage(total_count=total, items=items)


@router.get("/{cluster_id}", operation_id="get_cluster")
async def get_cluster(
    cluster_id: str, access: CanReadClusters, session: ReadSessionDep, providers: ProvidersDep
) -> ClusterRead:
    """A cluster with its roles (workloads) and nodes (pods) as last described; a VM
    cluster's values hide its package's password settings."""
    return await service.read_cluster(
        session, await service.get_cluster(session, cluster_id, access), providers
    )


@router.get("/{cluster_id}/nodes", operation_id="list_cluster_nodes")
async def list_nodes(cluster_id: str, access: CanReadClusters, session: ReadSessionDep) -> NodePage:
    """The cluster's nodes as its provider last found them (VM instances; Kubernetes pods)."""
    await service.get_cluster(session, cluster_id, access)
    nodes = await service.cluster_nodes(session, cluster_id)
    return NodePage(total_count=len(nodes), items=nodes)


@router.get("/{cluster_id}/releases", operation_id="list_cluster_releases")
async def list_releases(
    cluster_id: str, access: CanReadClusters, session: ReadSessionDep, providers: ProvidersDep
) -> ReleasePage:
    """The cluster's revisions, newest first: what `rollback {revision}` can return to (a VM
    package's password settings hidden in their values)."""
    cluster = await service.get_cluster(session, cluster_id, access)
    rows = await service.releases_of(session, cluster_id)
    provider = providers.named(cluster.provider)
    items = [service.release_read(r, provider) for r in reversed(rows)]
    return ReleasePage(total_count=len(items), items=items)


@router.get("/{cluster_id}/releases/{revision}", operation_id="get_cluster_release")
async def get_release(
    cluster_id: str,
    revision: Annotated[int, Path(ge=1, le=2**31 - 1)],
    access: CanReadClusters,
    session: ReadSessionDep,
    providers: ProvidersDep,
) -> ReleaseDetail:
    """One revision with what it deployed, as rendered (Kubernetes: its objects, Secret values
    redacted; a VM provider: its nodes, the values of the package's password settings
    redacted wherever they were rendered, and in the revision's values)."""
    cluster, row = await service.get_release(session, cluster_id, revision, access)
    return service.release_detail(row, providers.named(cluster.provider))


@router.patch("/{cluster_id}", operation_id="update_cluster")
async def update_cluster(
    cluster_id: str,
    data: ClusterUpdate,
    access: CanWriteClusters,
    session: SessionDep,
    providers: ProvidersDep,
) -> ClusterRead:
    row = await service.update_cluster(session, cluster_id, data, access)
    return await service.read_cluster(session, row, providers)


@router.delete(
    "/{cluster_id}",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="delete_cluster",
    response_model=ClusterJobAccepted,
    responses=ACTION_RESPONSES,
)
async def delete_cluster(
    cluster_id: str,
    access: CanWriteClusters,
    platform: ActionsDep,
    response: Response,
    dry_run: Annotated[bool, Query(description=DRY_RUN_DESCRIPTION)] = False,
) -> ClusterJobAccepted | JSONResponse:
    """Delete every object of the cluster (a job); the record stays as `deleted` until ceased.
    With `?dry_run=true`, 200 with the objects that would be deleted."""
    if dry_run:
        return await _preview(
            platform,
            lambda session, tools: service.preview_action(
                session, cluster_id, "delete", access, tools
            ),
        )
    async with platform.transaction() as session:
        cluster, job = await service.start_action(
            session, cluster_id, "delete", access, providers=platform.providers
        )
        return _accepted(response, cluster.cluster_id, job.job_id)


async def _act(
    platform: Actions,
    access: Access,
    idem: Idempotency,
    body: BaseModel | None,
    response: Response,
    cluster_id: str,
    action: str,
    *,
    dry_run: bool,
    **params: Any,
) -> ClusterJobAccepted | JSONResponse:
    """Start `action`, or with `dry_run` preview it (no idempotency record: a preview is
    safe to repeat and the key stays free for the action itself)."""
    if dry_run:
        return await _preview(
            platform,
            lambda session, tools: service.preview_action(
                session, cluster_id, action, access, tools, **params
            ),
        )
    async with platform.transaction() as session:
        return await _once(
            session,
            access,
            idem,
            body,
            response,
            lambda: service.start_action(
                session, cluster_id, action, access, providers=platform.providers, **params
            ),
        )


@router.post(
    "/{cluster_id}/actions/upgrade",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="upgrade_cluster",
    response_model=ClusterJobAccepted,
    responses=ACTION_RESPONSES,
)
async def upgrade(
    cluster_id: str,
    data: UpgradeRequest,
    access: CanWriteClusters,
    platform: ActionsDep,
    response: Response,
    idem: IdempotencyDep,
) -> ClusterJobAccepted | JSONResponse:
    """Deploy another version of the same app as a new revision; objects that left the chart
    are pruned."""
    return await _act(
        platform,
        access,
        idem,
        data,
        response,
        cluster_id,
        "upgrade",
        dry_run=data.dry_run,
        version_id=data.version_id,
        values=data.values,
    )


@router.post(
    "/{cluster_id}/actions/rollback",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="rollback_cluster",
    response_model=ClusterJobAccepted,
    responses=ACTION_RESPONSES,
)
async def rollback(
    cluster_id: str,
    data: RollbackRequest,
    access: CanWriteClusters,
    platform: ActionsDep,
    response: Response,
    idem: IdempotencyDep,
) -> ClusterJobAccepted | JSONResponse:
    """Re-deploy an earlier revision (default: the one before) as a new revision."""
    return await _act(
        platform,
        access,
        idem,
        data,
        response,
        cluster_id,
        "rollback",
        dry_run=data.dry_run,
        revision=data.revision,
    )


@router.post(
    "/{cluster_id}/actions/update-env",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="update_cluster_env",
    response_model=ClusterJobAccepted,
    responses=ACTION_RESPONSES,
)
async def update_env(
    cluster_id: str,
    data: UpdateEnvRequest,
    access: CanWriteClusters,
    platform: ActionsDep,
    response: Response,
    idem: IdempotencyDep,
) -> ClusterJobAccepted | JSONResponse:
    """Deploy the same version with changed values as a new revision: `values` merge over the
    deployed revision's (Helm's `--reuse-values`), or replace them with `reset_values`."""
    return await _act(
        platform,
        access,
        idem,
        data,
        response,
        cluster_id,
        "update_env",
        dry_run=data.dry_run,
        values=data.values,
        reset_values=data.reset_values,
    )


def _params(data: BaseModel) -> dict[str, Any]:
    """A node action's parameters: its body less `dry_run` and the fields left out."""
    return data.model_dump(mode="json", exclude={"dry_run"}, exclude_none=True)


def _simple_action(action: str, operation_id: str, doc: str) -> None:
    """Register the route of an action without parameters (its body, optional, may ask for a
    dry run): stop, start, recover, cease."""
    path = action.replace("_", "-")

    async def act(
        cluster_id: str,
        access: CanWriteClusters,
        platform: ActionsDep,
        response: Response,
        idem: IdempotencyDep,
        data: Annotated[ActionOptions | None, Body()] = None,
    ) -> ClusterJobAccepted | JSONResponse:
        return await _act(
            platform,
            access,
            idem,
            None,
            response,
            cluster_id,
            action,
            dry_run=data is not None and data.dry_run,
        )

    act.__doc__ = doc
    act.__name__ = operation_id
    router.post(
        f"/{{cluster_id}}/actions/{path}",
        status_code=status.HTTP_202_ACCEPTED,
        operation_id=operation_id,
        response_model=ClusterJobAccepted,
        responses=ACTION_RESPONSES,
    )(act)


_simple_action(
    "stop",
    "stop_cluster",
    "Stop every node of an active cluster (VM providers: instances stopped, disks kept); "
    "the cluster becomes `stopped`.",
)
_simple_action(
    "start",
    "start_cluster",
    "Start every node of a stopped cluster again; the cluster becomes `active`.",
)


def _node_action(
    action: str,
    operation_id: str,
    body: type[ResizeRequest | AddNodesRequest | DeleteNodesRequest],
    doc: str,
) -> None:
    """Register the route of a node action: its body is the action's parameters (checked
    against the cluster's roles and nodes by the service) and may ask for a dry run."""

    async def act(
        cluster_id: str,
        data: Any,
        access: CanWriteClusters,
        platform: ActionsDep,
        response: Response,
        idem: IdempotencyDep,
    ) -> ClusterJobAccepted | JSONResponse:
        return await _act(
            platform,
            access,
            idem,
            data,
            response,
            cluster_id,
            action,
            dry_run=data.dry_run,
            params=_params(data),
        )

    act.__annotations__["data"] = body  # the request body's model, per action
    act.__doc__ = doc
    act.__name__ = operation_id
    router.post(
        f"/{{cluster_id}}/actions/{action.replace('_', '-')}",
        status_code=status.HTTP_202_ACCEPTED,
        operation_id=operation_id,
        response_model=ClusterJobAccepted,
        responses=ACTION_RESPONSES,
    )(act)


_node_action(
    "resize",
    "resize_cluster",
    ResizeRequest,
    "Resize every node of one role (cpu, memory, data volume) of an active or stopped "
    "cluster. A role the cluster does not have is a 409 `no_such_role`.",
)
_node_action(
    "add_nodes",
    "add_cluster_nodes",
    AddNodesRequest,
    "Add nodes to one role of an active cluster, made like the role's others. A role the "
    "cluster does not have is a 409 `no_such_role`.",
)
_node_action(
    "delete_nodes",
    "delete_cluster_nodes",
    DeleteNodesRequest,
    "Remove nodes (by `node_id`, as GET /nodes lists them) from an active cluster. A node it "
    "does not have is a 409 `no_such_node`; removing every node is a 409 `last_nodes` (delete "
    "the cluster instead).",
)
_simple_action(
    "recover",
    "recover_cluster",
    "Bring a deleted cluster back from what its delete kept (VM providers: the instances it "
    "set aside); the cluster becomes `active`. Ceased clusters cannot be recovered.",
)
_simple_action(
    "cease",
    "cease_cluster",
    "Purge what a deleted cluster left behind and retire its record.",
)
_simple_action(
    "refresh",
    "refresh_cluster",
    "Read an active or stopped cluster's roles and nodes from its cloud again (Kubernetes: "
    "its workloads and pods; VM providers: its instances), so GET /nodes shows an instance "
    "stopped, resized or lost outside OpenPitrix as it is. Nothing in the cloud changes and "
    "the cluster keeps its status; a dry run is a 409 `preview_unsupported`.",
)
