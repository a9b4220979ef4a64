"""Cluster jobs for the job engine: plan through the runtime's provider, run tasks with the
cluster's credential and release history, and settle the cluster when the job ends."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from openpitrix.apps.models import AppVersion
from openpitrix.bus.topology import TASK_MANAGER
from openpitrix.clusters.charts import chart_package
from openpitrix.clusters.models import Cluster, ClusterRelease
from openpitrix.clusters.schemas import ClusterStatus, Transition
from openpitrix.clusters.service import DEPLOYS, RESOURCE_KIND, TRANSITIONS, releases_of
from openpitrix.db.types import utcnow
from openpitrix.errors import AppError
from openpitrix.events.publisher import emit_event
from openpitrix.events.schemas import EventType
from openpitrix.jobs.adapter import Reporter
from openpitrix.jobs.models import Job, Task
from openpitrix.jobs.plan import PlannedTask
from openpitrix.jobs.schemas import JobStatus
from openpitrix.netguard import AddressPolicy
from openpitrix.providers.base import (
    ProviderError,
    Release,
    TaskRun,
)
from openpitrix.providers.registry import get_provider
from openpitrix.repos.models import Repo
from openpitrix.runtimes.models import Runtime, RuntimeCredential
from openpitrix.runtimes.service import open_credential
from openpitrix.workers.service import WorkerContext


def _release(
    row: ClusterRelease | None, objects: dict[int, list[dict[str, Any]]]
) -> Release | None:
    if row is None:
        return None
    return Release(
        revision=row.revision,
        version_id=row.version_id,
        values=row.values,
        objects=objects.get(row.revision),
    )


class ClusterJobs:
    resource_kind = RESOURCE_KIND

    def runner(self, action: str) -> str:
        return TASK_MANAGER  # every provider task, on the task-managers' consumer

    async def plan(self, session: AsyncSession, job: Job) -> list[list[PlannedTask]]:
        cluster = await session.get(Cluster, job.resource_id)
        if cluster is None:
            raise ProviderError("cluster_missing", f"cluster {job.resource_id} is gone")
        return get_provider(cluster.provider).plan(str(job.params["action"]))

    async def target(self, session: AsyncSession, job: Job) -> str | None:
        cluster = await session.get(Cluster, job.resource_id)
        return cluster.runtime_id if cluster is not None else None

    async def run_task(
        self, ctx: WorkerContext, job: Job, task: Task, report: Reporter
    ) -> dict[str, Any]:
        async with ctx.db.read_session() as session:
            cluster = await session.get(Cluster, job.resource_id)
            runtime = await session.get(Runtime, cluster.runtime_id) if cluster else None
            cred = await session.get(RuntimeCredential, runtime.credential_id) if runtime else None
            if cluster is None or runtime is None or cred is None:
                raise ProviderError("cluster_missing", "the cluster or its runtime is gone")
            history = await releases_of(session, cluster.cluster_id)
        revision = job.params.get("revision")
        this = next((r for r in history if r.revision == revision), None)
        # The revision to prune against: the deployed one this job replaces.
        before = next(
            (r for r in history if r.revision == cluster.revision and r.revision != revision),
            None,
        )
        # A pending release has not been rendered yet: its objects are unknown, not empty.
        objects = {r.revision: orjson.loads(r.manifest) for r in history if r.status != "pending"}
        kinds = {
            (str(obj.get("apiVersion")), str(obj.get("kind")))
            for rendered in objects.values()
            for obj in rendered
        }
        try:
            credential = open_credential(cred, ctx.secrets)
        except AppError as exc:
            raise ProviderError(exc.code, exc.message) from None
        provider = get_provider(cluster.provider)

        async def fetch_chart() -> bytes:
            if this is None:
                raise ProviderError("render_failed", "the job has no release to render")
            return await _fetch_chart(ctx, this.version_id)

        run = TaskRun(
            action=task.action,
            params=task.params,
            cluster_id=cluster.cluster_id,
            zone=cluster.zone,
            credential=credential,
            release=_release(this, objects),
            previous=_release(before, objects),
            known_kinds=sorted(kinds),
            fetch_chart=fetch_chart,
            report=report,
            timeout_seconds=task.timeout_seconds or ctx.settings.worker.task_timeout_seconds,
            policy=AddressPolicy.of(ctx.settings.network),
        )
        return await provider.run_task(run)

    async def task_succeeded(
        self, session: AsyncSession, job: Job, task: Task, result: dict[str, Any]
    ) -> dict[str, Any]:
        if task.action == "render" and "objects" in result:
            release = await session.get(
                ClusterRelease, (job.resource_id, job.params.get("revision"))
            )
            if release is not None:
                release.manifest = orjson.dumps(result["objects"]).decode()
                release.chart_version = str(result.get("chart_version") or release.chart_version)
                release.status = "rendered"
            # The objects live in the release; the task shows a summary.
            return {"objects": len(result["objects"]), "chart_version": result.get("chart_version")}
        if task.action == "describe":
            cluster = await session.get(Cluster, job.resource_id)
            if cluster is not None:
                cluster.resources = result
            return {"roles": len(result.get("roles", [])), "nodes": len(result.get("nodes", []))}
        return result

    async def job_ended(self, session: AsyncSession, job: Job, status: JobStatus) -> None:
        cluster = await session.get(Cluster, job.resource_id, populate_existing=True)
        if cluster is None:
            return
        action = str(job.params.get("action"))
        revision = job.params.get("revision")
        release = (
            await session.get(ClusterRelease, (cluster.cluster_id, revision))
            if revision is not None
            else None
        )
        now = utcnow()
        if status == JobStatus.SUCCESSFUL:
            if action in DEPLOYS and release is not None:
                for row in await releases_of(session, cluster.cluster_id):
                    if row.status == "deployed":
                        row.status = "superseded"
                release.status = "deployed"
                cluster.revision = release.revision
                cluster.version_id = release.version_id
                cluster.values = release.values
                version = await session.get(AppVersion, release.version_id)
                if version is not None:
                    cluster.app_id = version.app_id
                _set_status(cluster, ClusterStatus.ACTIVE, now)
            elif action == "delete":
                _set_status(cluster, ClusterStatus.DELETED, now)
            elif action == "cease":
                _set_status(cluster, ClusterStatus.CEASED, now)
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
        cluster.transition_status = TRANSITIONS[str(job.params.get("action"))]
        cluster.job_id = job.job_id
        return True


def _set_status(cluster: Cluster, status: ClusterStatus, now: Any) -> None:
    if cluster.status != status:
        cluster.status = status
        cluster.status_time = now


async def _fetch_chart(ctx: WorkerContext, version_id: str) -> bytes:
    """The chart package of a version, with the repo's credential, size-capped."""
    async with ctx.db.read_session() as session:
        version = await session.get(AppVersion, version_id)
        repo = await session.get(Repo, version.repo_id) if version else None
    if version is None or repo is None:
        raise ProviderError("chart_unavailable", f"app version {version_id} has no package")
    return await chart_package(ctx.http, ctx.secrets, version, repo)
