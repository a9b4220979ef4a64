"""Cluster jobs for the job engine: plan through the runtime's provider, run tasks with the
cluster's credential and release history, and settle the cluster when the job ends."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix.apps.models import AppVersion
from openpitrix.apps.packages import version_package
from openpitrix.bus.topology import TASK_MANAGER
from openpitrix.clusters.lifecycle import rule_of
from openpitrix.clusters.models import Cluster, ClusterRelease
from openpitrix.clusters.nodes import replace_state, state_of
from openpitrix.clusters.schemas import ClusterStatus, Transition
from openpitrix.clusters.service import RESOURCE_KIND, release_of, releases_of
from openpitrix.db.types import utcnow
from openpitrix.errors import AppError
from openpitrix.events.publisher import emit_event
from openpitrix.events.schemas import EventType
from openpitrix.jobs.adapter import ChainMemory, Reporter, SlotGiver
from openpitrix.jobs.models import Job, Task
from openpitrix.jobs.plan import PlannedTask
from openpitrix.jobs.schemas import JobStatus
from openpitrix.jobs.service import keep_checkpoint
from openpitrix.netguard import AddressPolicy
from openpitrix.providers.base import (
    ClusterState,
    Credential,
    PlanRequest,
    Produces,
    ProviderError,
    RenderedManifest,
    TaskRun,
)
from openpitrix.providers.registry import Providers
from openpitrix.repos.models import Repo
from openpitrix.runtimes.models import Runtime, RuntimeCredential
from openpitrix.runtimes.service import open_credential
from openpitrix.workers.service import WorkerContext

# How many clusters' providers an adapter remembers before it starts over.
PROVIDER_MEMORY = 4096


_CONTEXT = "cluster_context"


@dataclass(frozen=True)
class _Context:
    """What a cluster task runs with, as read from the database: kept in the chain's memory
    while the job's tasks run one after another (see `run_task`). What it holds changes only
    by the job's own tasks while the job holds the cluster's lock, but for the credential,
    which a chain goes on using once read (a new run, retry or message reads it again)."""

    cluster: Cluster
    credential: Credential
    releases: list[ClusterRelease]
    state: ClusterState


async def _read_context(ctx: WorkerContext, cluster_id: str) -> _Context:
    async with ctx.db.read_session() as session:
        found = (await session.execute(_CLUSTER_AND_CREDENTIAL, {"cluster_id": cluster_id})).first()
        if found is None:
            raise ProviderError("cluster_missing", "the cluster or its runtime is gone")
        cluster, cred = found
        rows = await releases_of(session, cluster.cluster_id)
        state = await state_of(session, cluster.cluster_id)
    try:
        credential = open_credential(cred, ctx.secrets)
    except AppError as exc:
        raise ProviderError(exc.code, exc.message) from None
    return _Context(cluster=cluster, credential=credential, releases=rows, state=state)


# The cluster with its runtime's credential, in one statement built once.
_CLUSTER_AND_CREDENTIAL = (
    select(Cluster, RuntimeCredential)
    .join(Runtime, col(Runtime.runtime_id) == col(Cluster.runtime_id))
    .join(RuntimeCredential, col(RuntimeCredential.credential_id) == col(Runtime.credential_id))
    .where(col(Cluster.cluster_id) == bindparam("cluster_id"))
)


class ClusterJobs:
    """Cluster jobs, planned and run by the cluster's provider. The adapter knows no task
    name: what a task's result carries for the cluster follows from its kind's declared
    `produces` (a release's manifest, the cluster's roles and nodes)."""

    resource_kind = RESOURCE_KIND

    def __init__(self, providers: Providers) -> None:
        self.providers = providers
        # Cluster id -> provider name, of clusters whose tasks ran here (a cluster's provider
        # never changes): settling a task needs no read of the cluster.
        self._providers_by_cluster: dict[str, str] = {}

    def runner(self, action: str) -> str:
        return TASK_MANAGER  # every provider task, on the task-managers' consumer

    async def plan(self, session: AsyncSession, job: Job) -> list[list[PlannedTask]]:
        cluster = await session.get(Cluster, job.resource_id)
        if cluster is None:
            raise ProviderError("cluster_missing", f"cluster {job.resource_id} is gone")
        provider = self.providers.named(cluster.provider)
        action = str(job.params["action"])
        if action not in provider.capabilities.cluster_actions:
            raise ProviderError(
                "action_unsupported",
                f"{provider.name} clusters do not support {action.replace('_', '-')}",
            )
        request = PlanRequest(
            action=action,
            params=dict(job.params.get("params") or {}),
            cluster_id=cluster.cluster_id,
            zone=cluster.zone,
            state=await state_of(session, cluster.cluster_id),
        )
        layers = provider.plan(request)
        for layer in layers:
            for task in layer:
                if provider.capabilities.task_kind(task.action) is None:
                    raise ProviderError(
                        "plan_invalid",
                        f"{provider.name} planned a task of undeclared kind {task.action!r}",
                    )
        return layers

    async def target(self, session: AsyncSession, job: Job) -> str | None:
        cluster = await session.get(Cluster, job.resource_id)
        return cluster.runtime_id if cluster is not None else None

    async def run_task(
        self,
        ctx: WorkerContext,
        job: Job,
        task: Task,
        report: Reporter,
        give_back: SlotGiver,
        memory: ChainMemory,
    ) -> dict[str, Any]:
        context = memory.pop(_CONTEXT, None)
        if not isinstance(context, _Context):  # a chain runs one job's tasks: its cluster
            context = await _read_context(ctx, job.resource_id)
        cluster, credential, rows = context.cluster, context.credential, context.releases
        state = context.state.model_copy(deep=True)  # the task's own: the memory's stays as read
        self._remember_provider(cluster)
        revision = job.params.get("revision")
        this = next((r for r in rows if r.revision == revision), None)
        # The revision to prune against: the deployed one this job replaces.
        before = next(
            (r for r in rows if r.revision == cluster.revision and r.revision != revision),
            None,
        )
        provider = self.providers.named(cluster.provider)

        async def fetch_package() -> bytes:
            if this is None:
                raise ProviderError("render_failed", "the job has no release to render")
            return await _fetch_package(ctx, this.version_id)

        run = TaskRun(
            action=task.action,
            params=task.params,
            cluster_id=cluster.cluster_id,
            zone=cluster.zone,
            credential=credential,
            release=release_of(this) if this is not None else None,
            previous=release_of(before) if before is not None else None,
            history=tuple(release_of(r) for r in rows if r.status != "pending"),
            state=state,
            fetch_package=fetch_package,
            report=report,
            timeout_seconds=task.timeout_seconds or ctx.settings.worker.task_timeout_seconds,
            policy=AddressPolicy.of(ctx.settings.network),
            checkpoint=dict(task.checkpoint),
            keep=partial(_keep, ctx, task.task_id),
            watch_only=give_back,
        )
        result = await provider.run_task(run)
        kind = provider.capabilities.task_kind(task.action)
        produces = kind.produces if kind is not None else Produces.NOTHING
        # A result that does not hold what its kind declares fails the task here, with the
        # provider named, rather than the settle that would store it.
        try:
            if produces == Produces.MANIFEST:
                RenderedManifest.model_validate(result)
            elif produces == Produces.STATE:
                ClusterState.model_validate(result)
        except ValidationError as exc:
            raise ProviderError(
                "invalid_task_result",
                f"{provider.name} task {task.action} returned no valid {produces.value}: "
                f"{exc.errors()[0]['msg']}",
            ) from None
        if produces == Produces.NOTHING:
            # Nothing of the context changes as this task settles (a task that produces a
            # manifest or a state rewrites the release or the nodes): the job's next task in
            # this chain runs on it as read.
            memory[_CONTEXT] = context
        return result

    async def task_succeeded(
        self, session: AsyncSession, job: Job, task: Task, result: dict[str, Any]
    ) -> dict[str, Any]:
        provider = await self._provider_of(session, job.resource_id)
        if provider is None:
            return result  # the cluster is gone
        kind = self.providers.named(provider).capabilities.task_kind(task.action)
        if kind is not None and kind.produces == Produces.MANIFEST:
            manifest = RenderedManifest.model_validate(result)
            # Written without reading the release first: a release that is gone is no row.
            values: dict[str, Any] = {
                "manifest": orjson.dumps(manifest.objects).decode(),
                "status": "rendered",
            }
            if manifest.chart_version:
                values["chart_version"] = manifest.chart_version
            await session.execute(
                update(ClusterRelease)
                .where(
                    col(ClusterRelease.cluster_id) == job.resource_id,
                    col(ClusterRelease.revision) == job.params.get("revision"),
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            # The objects live in the release; the task shows a summary.
            return {"objects": len(manifest.objects), "chart_version": manifest.chart_version}
        if kind is not None and kind.produces == Produces.STATE:
            state = ClusterState.model_validate(result)
            await replace_state(session, job.resource_id, state)
            return {"roles": len(state.roles), "nodes": len(state.nodes)}
        return result

    def _remember_provider(self, cluster: Cluster) -> None:
        if len(self._providers_by_cluster) >= PROVIDER_MEMORY:
            self._providers_by_cluster.clear()
        self._providers_by_cluster[cluster.cluster_id] = cluster.provider

    async def _provider_of(self, session: AsyncSession, cluster_id: str) -> str | None:
        """The cluster's provider: fixed when the cluster is made, so the one this process
        read for the task's run is still right; read when not known here."""
        known = self._providers_by_cluster.get(cluster_id)
        if known is not None:
            return known
        found = await session.execute(
            select(col(Cluster.provider)).where(col(Cluster.cluster_id) == cluster_id)
        )
        return found.scalar()

    async def job_ended(self, session: AsyncSession, job: Job, status: JobStatus) -> None:
        cluster = await session.get(Cluster, job.resource_id, populate_existing=True)
        if cluster is None:
            return
        action = str(job.params.get("action"))
        revision = job.params.get("revision")
        # Every release, read once: the job's, and the deployed one it may supersede.
        rows = await releases_of(session, cluster.cluster_id) if revision is not None else []
        release = next((r for r in rows if r.revision == revision), None)
        now = utcnow()
        rule = rule_of(action)
        if status == JobStatus.SUCCESSFUL:
            if rule.deploys and release is not None:
                for row in rows:
                    if row.status == "deployed":
                        row.status = "superseded"
                release.status = "deployed"
                cluster.revision = release.revision
                cluster.version_id = release.version_id
                cluster.values = release.values
                version = await session.get(AppVersion, release.version_id)
                if version is not None:
                    cluster.app_id = version.app_id
            if rule.leaves is not None:
                _set_status(cluster, rule.leaves, now)
        elif release is not None and release.status != "deployed":
            release.status = "failed"
        # Whatever the outcome, the lock goes: a failed create leaves a pending cluster the
        # user can delete or retry, never one stuck in "creating".
        cluster.transition_status = Transition.NONE
        cluster.update_time = now
        emit_event(
            session,
            type=EventType.RESOURCE_STATUS,
            owner=cluster.owner,
            owner_path=cluster.owner_path,
            resource_kind=RESOURCE_KIND,
            resource_id=cluster.cluster_id,
            job_id=job.job_id,
            status=cluster.status,
            message=f"cluster {cluster.status} after {action} {status.value}",
            data={"revision": cluster.revision},
        )

    async def relock(self, session: AsyncSession, job: Job) -> bool:
        """Take the cluster's lock again for a retried job; False if another job holds it."""
        cluster = await session.get(Cluster, job.resource_id, populate_existing=True)
        if cluster is None or cluster.transition_status != Transition.NONE:
            return False
        cluster.transition_status = rule_of(str(job.params.get("action"))).transition
        cluster.job_id = job.job_id
        return True


def _set_status(cluster: Cluster, status: ClusterStatus, now: Any) -> None:
    if cluster.status != status:
        cluster.status = status
        cluster.status_time = now


async def _fetch_package(ctx: WorkerContext, version_id: str) -> bytes:
    """The package of a version (a chart), with the repo's credential, size-capped."""
    async with ctx.db.read_session() as session:
        version = await session.get(AppVersion, version_id)
        repo = await session.get(Repo, version.repo_id) if version else None
    if version is None or repo is None:
        raise ProviderError("chart_unavailable", f"app version {version_id} has no package")
    return await version_package(ctx.http, ctx.secrets, version, repo)


async def _keep(ctx: WorkerContext, task_id: str, data: dict[str, Any]) -> None:
    """A task's keeper: the checkpoint is committed before the provider goes on."""
    async with ctx.db.transaction() as session:
        await keep_checkpoint(session, task_id, data)
