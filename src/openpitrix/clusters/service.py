"""Cluster use cases: deploy, read, list, rename, and the lifecycle actions that start jobs.

Every action takes the cluster's lock (`transition_status`) with a guarded UPDATE in the same
transaction as its job, so two operations on one cluster can never overlap; the job engine
releases the lock when the job ends, whatever the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from pydantic import ValidationError
from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix import ids
from openpitrix.apps.models import AppVersion
from openpitrix.apps.packages import version_package
from openpitrix.apps.service import get_version
from openpitrix.bus.topology import JOB_MANAGER
from openpitrix.clusters.lifecycle import LIVE, rule_of
from openpitrix.clusters.models import Cluster, ClusterRelease
from openpitrix.clusters.nodes import state_of, states_of
from openpitrix.clusters.schemas import (
    MAX_VALUES_BYTES,
    ClusterCreate,
    ClusterRead,
    ClusterStatus,
    ClusterUpdate,
    ReleaseDetail,
    ReleaseRead,
    Transition,
    ValuesMode,
)
from openpitrix.crypto import SecretBox
from openpitrix.db.listing import ListQuery, ListSpec, paginate
from openpitrix.db.rows import add_row, get_or_404
from openpitrix.db.types import utcnow
from openpitrix.errors import AppError, BadRequest, Conflict, NotFound
from openpitrix.iam.access import Access, Op
from openpitrix.jobs import service as jobs
from openpitrix.jobs.models import Job
from openpitrix.netguard import AddressPolicy
from openpitrix.providers.base import (
    ClusterState,
    NodeState,
    Preview,
    PreviewRequest,
    Provider,
    ProviderError,
    Release,
)
from openpitrix.providers.registry import Providers
from openpitrix.repos.models import Repo
from openpitrix.runtimes.models import Runtime, RuntimeCredential
from openpitrix.runtimes.service import get_writable_runtime, ineligibility, open_credential

RESOURCE_KIND = "cluster"

CLUSTER_LIST = ListSpec(
    sort_keys={
        "create_time": col(Cluster.create_time),
        "update_time": col(Cluster.update_time),
        "status_time": col(Cluster.status_time),
        "name": col(Cluster.name),
    },
    default_sort="create_time",
    id_columns=[col(Cluster.cluster_id)],
    text_columns=[col(Cluster.name), col(Cluster.description)],
)


def cluster_read(
    row: Cluster, state: ClusterState, values: dict[str, Any] | None = None
) -> ClusterRead:
    return ClusterRead.model_validate(
        {
            **row.model_dump(),
            "values": row.values if values is None else values,
            "roles": state.roles,
            "nodes": state.nodes,
        }
    )


async def shown_values(
    session: AsyncSession, rows: Sequence[Cluster], providers: Providers
) -> dict[str, dict[str, Any]]:
    """Each cluster's values as its provider shows them, for the providers that hide some
    (a VM package's password settings): read with the manifest of the cluster's revision,
    which says which values are secret. Other clusters' values are shown as stored."""
    hiding = [r for r in rows if r.provider in providers and providers[r.provider].redacts_values]
    if not hiding:
        return {}
    found = await session.execute(
        select(ClusterRelease).where(
            or_(
                *(
                    (col(ClusterRelease.cluster_id) == r.cluster_id)
                    & (col(ClusterRelease.revision) == r.revision)
                    for r in hiding
                )
            )
        )
    )
    manifests = {rel.cluster_id: _stored_manifest(rel) for rel in found.scalars().all()}
    return {
        r.cluster_id: providers[r.provider].redact_values(r.values, manifests.get(r.cluster_id, []))
        for r in hiding
    }


async def read_cluster(session: AsyncSession, row: Cluster, providers: Providers) -> ClusterRead:
    """The cluster with its roles and nodes, its values as its provider shows them."""
    values = await shown_values(session, [row], providers)
    return cluster_read(row, await state_of(session, row.cluster_id), values.get(row.cluster_id))


async def cluster_nodes(session: AsyncSession, cluster_id: str) -> list[NodeState]:
    return (await state_of(session, cluster_id)).nodes


def _check_values(values: dict[str, Any]) -> None:
    if len(orjson.dumps(values)) > MAX_VALUES_BYTES:
        raise BadRequest(
            f"values are larger than {MAX_VALUES_BYTES // 1024} KiB", code="values_too_large"
        )


async def _deployable_version(
    session: AsyncSession, version_id: str, access: Access
) -> tuple[AppVersion, Repo]:
    await get_version(session, version_id, access.caller.access(Op.APP_READ))
    version = await session.get(AppVersion, version_id)
    repo = await session.get(Repo, version.repo_id) if version else None
    if version is None or repo is None:
        raise NotFound("app version", version_id)
    if version.status != "active" or repo.status == "deleted":
        raise Conflict(
            f"app version {version_id!r} is {version.status}; only active versions deploy",
            code="version_not_active",
        )
    return version, repo


def _check_eligible(runtime: Runtime, repo: Repo) -> None:
    reason = ineligibility(runtime, repo)
    if reason is not None:
        raise Conflict(
            f"runtime {runtime.runtime_id} may not run apps of repo {repo.repo_id}: {reason}",
            code="runtime_not_eligible",
        )


def _check_supported(providers: Providers, runtime_provider: str, action: str) -> None:
    provider = providers.named(runtime_provider)
    if action not in provider.capabilities.cluster_actions:
        raise Conflict(
            f"{runtime_provider} clusters do not support {action.replace('_', '-')}",
            code="action_unsupported",
        )


def _check_package_kind(providers: Providers, runtime_provider: str, version: AppVersion) -> None:
    accepted = providers.named(runtime_provider).capabilities.package_kinds
    if version.package_kind not in accepted:
        raise Conflict(
            f"app version {version.version_id!r} is a {version.package_kind} package; "
            f"{runtime_provider} runtimes deploy {', '.join(sorted(accepted))} packages",
            code="package_kind_unsupported",
        )


def _job_of(
    session: AsyncSession,
    cluster: Cluster,
    action: str,
    revision: int | None,
    params: dict[str, Any] | None = None,
    *,
    job_id: str | None = None,
) -> Job:
    return jobs.add_job(
        session,
        action=f"{action}_cluster",
        resource_kind=RESOURCE_KIND,
        resource_id=cluster.cluster_id,
        owner=cluster.owner,
        owner_path=cluster.owner_path,
        manager=JOB_MANAGER,
        verb="advance",
        params=_job_params(action, revision, params),
        job_id=job_id,
    )


def _job_params(action: str, revision: int | None, params: dict[str, Any] | None) -> dict[str, Any]:
    # `params` are the action's own (a resize's role and sizes); the provider plans from them
    # (ClusterJobs.plan).
    return {"action": action, "revision": revision, "params": params or {}}


async def load_create_rows(
    session: AsyncSession, wanted: Sequence[tuple[str, str]]
) -> Sequence[object]:
    """Read the versions (with their repos) and the runtimes that deploys name, as (version id,
    runtime id) pairs, in two statements however many deploys there are, into the session's
    identity map: their checks (`create_checks`) then find them there (`session.get` asks the
    database only for a row the session holds no object of). The identity map holds its
    objects weakly: the caller keeps the returned rows until the checks are done. A missing one
    is simply not loaded, and its check reads it again and answers as it always does."""
    versions = await session.execute(
        select(AppVersion, Repo)
        .join(Repo, col(Repo.repo_id) == col(AppVersion.repo_id))
        .where(col(AppVersion.version_id).in_({version for version, _ in wanted}))
    )
    runtimes = await session.scalars(
        select(Runtime).where(col(Runtime.runtime_id).in_({runtime for _, runtime in wanted}))
    )
    return [*versions.all(), *runtimes.all()]


async def create_checks(
    session: AsyncSession, data: ClusterCreate, access: Access, providers: Providers
) -> tuple[AppVersion, Repo, Runtime]:
    """Everything a deploy checks, from the rows `load_create_rows` loaded; writes nothing."""
    _check_values(data.values)
    version, repo = await _deployable_version(session, data.version_id, access)
    runtime = await get_writable_runtime(
        session, data.runtime_id, access.caller.access(Op.RUNTIME_WRITE)
    )
    _check_eligible(runtime, repo)
    _check_supported(providers, runtime.provider, "create")
    _check_package_kind(providers, runtime.provider, version)
    return version, repo, runtime


def add_cluster(
    session: AsyncSession,
    data: ClusterCreate,
    access: Access,
    version: AppVersion,
    runtime: Runtime,
) -> tuple[str, str]:
    """Add a checked deploy's rows (cluster, first release, job, its first event and command)
    to the transaction, inserted with the batch's others as it commits (`add_row`: nothing
    in a deploy's transaction reads them back); returns the cluster's and the job's ids."""
    now = utcnow()
    # The job's id is known up front, so the cluster and its release are inserted with it:
    # no UPDATEs to fill it in afterwards.
    job_id = ids.new_id(ids.JOB)
    cluster_id = ids.new_id(ids.CLUSTER)
    add_row(
        session,
        Cluster,
        cluster_id=cluster_id,
        name=data.name,
        description=data.description,
        app_id=version.app_id,
        version_id=version.version_id,
        runtime_id=runtime.runtime_id,
        provider=runtime.provider,
        zone=runtime.zone,
        status=ClusterStatus.PENDING,
        transition_status=Transition.CREATING,
        values=data.values,
        owner=access.owner,
        owner_path=access.owner_path,
        create_time=now,
        update_time=now,
        status_time=now,
        job_id=job_id,
    )
    add_row(  # after its cluster: the release's foreign key
        session,
        ClusterRelease,
        cluster_id=cluster_id,
        revision=1,
        version_id=version.version_id,
        chart_version=version.version,
        values=data.values,
        values_mode=ValuesMode.RESET,
        job_id=job_id,
    )
    jobs.insert_job(
        session,
        jobs.NewJob(
            job_id=job_id,
            action="create_cluster",
            resource_kind=RESOURCE_KIND,
            resource_id=cluster_id,
            owner=access.owner,
            owner_path=access.owner_path,
        ),
        manager=JOB_MANAGER,
        verb="advance",
        params=_job_params("create", 1, None),
    )
    return cluster_id, job_id


async def get_cluster(session: AsyncSession, cluster_id: str, access: Access) -> Cluster:
    row = await get_or_404(session, Cluster, cluster_id, "cluster")
    access.check_visible("cluster", cluster_id, row.owner, row.owner_path)
    return row


async def get_writable_cluster(session: AsyncSession, cluster_id: str, access: Access) -> Cluster:
    row = await get_or_404(session, Cluster, cluster_id, "cluster")
    access.check_writable("cluster", cluster_id, row.owner, row.owner_path)
    return row


@dataclass(frozen=True)
class ClusterFilters:
    app_id: Sequence[str] = ()
    version_id: Sequence[str] = ()
    runtime_id: Sequence[str] = ()
    status: Sequence[str] = ()
    owner: Sequence[str] = ()


async def list_clusters(
    session: AsyncSession,
    query: ListQuery,
    access: Access,
    filters: ClusterFilters,
    providers: Providers,
) -> tuple[int, list[ClusterRead]]:
    stmt = select(Cluster).where(access.clause(col(Cluster.owner), col(Cluster.owner_path)))
    for column, values in (
        (col(Cluster.app_id), filters.app_id),
        (col(Cluster.version_id), filters.version_id),
        (col(Cluster.runtime_id), filters.runtime_id),
        (col(Cluster.owner), filters.owner),
    ):
        if values:
            stmt = stmt.where(column.in_(values))
    # Ceased clusters are history: shown only when asked for.
    stmt = stmt.where(
        col(Cluster.status).in_(filters.status)
        if filters.status
        else col(Cluster.status) != ClusterStatus.CEASED
    )
    total, rows = await paginate(session, stmt, CLUSTER_LIST, query)
    states = await states_of(session, [r.cluster_id for r in rows])
    shown = await shown_values(session, rows, providers)
    return total, [cluster_read(r, states[r.cluster_id], shown.get(r.cluster_id)) for r in rows]


async def update_cluster(
    session: AsyncSession, cluster_id: str, data: ClusterUpdate, access: Access
) -> Cluster:
    row = await get_writable_cluster(session, cluster_id, access)
    if data.name is not None:
        row.name = data.name
    if data.description is not None:
        row.description = data.description
    row.update_time = utcnow()
    return row


async def lock(session: AsyncSession, cluster: Cluster, action: str) -> None:
    """Take the cluster's lock for `action`, or 409 when another operation holds it."""
    taken = await session.execute(
        update(Cluster)
        .where(
            col(Cluster.cluster_id) == cluster.cluster_id,
            col(Cluster.transition_status) == Transition.NONE,
        )
        .values(transition_status=rule_of(action).transition, update_time=utcnow())
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        await session.refresh(cluster)
        raise Conflict(
            f"cluster {cluster.cluster_id!r} is busy ({cluster.transition_status}); wait for "
            f"job {cluster.job_id} to end",
            code="cluster_busy",
            details={"job_id": cluster.job_id},
        )
    await session.refresh(cluster)


async def _next_revision(session: AsyncSession, cluster_id: str) -> int:
    top = await session.execute(
        select(func.max(col(ClusterRelease.revision))).where(
            col(ClusterRelease.cluster_id) == cluster_id
        )
    )
    return int(top.scalar() or 0) + 1


async def start_action(
    session: AsyncSession,
    cluster_id: str,
    action: str,
    access: Access,
    *,
    providers: Providers,
    version_id: str | None = None,
    values: dict[str, Any] | None = None,
    reset_values: bool = False,
    revision: int | None = None,
    params: dict[str, Any] | None = None,
) -> tuple[Cluster, Job]:
    """Start any action but create (see clusters.lifecycle): its job, holding the lock.

    update_env merges `values` over the deployed revision's unless `reset_values`; `params`
    are a node action's parameters (ResizeParams, ... as a dict)."""
    cluster, inputs = await _checked_action(
        session,
        cluster_id,
        action,
        access,
        providers,
        version_id,
        values,
        reset_values,
        revision,
        params,
    )
    release_revision = None
    release: ClusterRelease | None = None
    await lock(session, cluster, action)
    if inputs is not None:
        release_revision = await _next_revision(session, cluster_id)
        version = await session.get(AppVersion, inputs[0])
        release = ClusterRelease(
            cluster_id=cluster_id,
            revision=release_revision,
            version_id=inputs[0],
            chart_version=version.version if version else "",
            values=inputs[1],
            values_mode=inputs[2],
        )
        session.add(release)
    job = _job_of(session, cluster, action, release_revision, params)
    await session.flush()
    cluster.job_id = job.job_id
    if release is not None:
        release.job_id = job.job_id
    await session.flush()
    return cluster, job


async def _checked_action(
    session: AsyncSession,
    cluster_id: str,
    action: str,
    access: Access,
    providers: Providers,
    version_id: str | None,
    values: dict[str, Any] | None,
    reset_values: bool,
    revision: int | None,
    params: dict[str, Any] | None = None,
) -> tuple[Cluster, tuple[str, dict[str, Any], ValuesMode] | None]:
    """Everything an action checks before it takes the lock; for a deploy, what it deploys
    (version, values and how they were made)."""
    cluster = await get_writable_cluster(session, cluster_id, access)
    _check_supported(providers, cluster.provider, action)
    rule = rule_of(action)
    if cluster.status not in rule.starts_from:
        raise Conflict(
            f"cannot {action.replace('_', '-')} a cluster that is {cluster.status}",
            code="cluster_state",
        )
    if rule.params is not None:
        await _check_params(session, cluster, action, params or {})
    inputs = None
    if rule.deploys:
        inputs = await _release_inputs(
            session, cluster, action, access, version_id, values, revision, reset_values
        )
        _check_values(inputs[1])
        if action == "upgrade":
            version = await session.get(AppVersion, inputs[0])
            if version is not None:
                _check_package_kind(providers, cluster.provider, version)
    return cluster, inputs


async def _release_inputs(
    session: AsyncSession,
    cluster: Cluster,
    action: str,
    access: Access,
    version_id: str | None,
    values: dict[str, Any] | None,
    revision: int | None,
    reset_values: bool = False,
) -> tuple[str, dict[str, Any], ValuesMode]:
    if action == "update_env":
        assert values is not None
        if reset_values:
            return cluster.version_id, values, ValuesMode.RESET
        return cluster.version_id, merge_values(cluster.values, values), ValuesMode.REUSED
    if action == "upgrade":
        assert version_id is not None
        version, repo = await _deployable_version(session, version_id, access)
        if version.app_id != cluster.app_id:
            raise BadRequest(
                f"version {version_id!r} is not a version of app {cluster.app_id}",
                code="other_app",
            )
        runtime = await session.get(Runtime, cluster.runtime_id)
        if runtime is not None:
            _check_eligible(runtime, repo)
        if values is None:
            return version_id, cluster.values, ValuesMode.REUSED
        return version_id, values, ValuesMode.RESET
    # rollback: default to the revision before the deployed one.
    target = revision or cluster.revision - 1
    release = await session.get(ClusterRelease, (cluster.cluster_id, target))
    if release is None or release.status not in ("deployed", "superseded") or target < 1:
        raise Conflict(
            f"cluster {cluster.cluster_id!r} has no deployed revision {target}",
            code="no_such_revision",
        )
    return release.version_id, release.values, ValuesMode.RESTORED


def merge_values(current: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """`given` over `current` the way Helm's `--reuse-values` coalesces them: nested tables
    merge key by key and anything else in `given` wins. A `null` for a key `current` set drops
    that override (the chart's default applies again); a `null` for any other key stays, and
    removes the chart's default when rendered, as a null does in Helm."""
    merged = dict(current)
    for key, value in given.items():
        if value is None and key in merged:
            del merged[key]
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged


def release_of(row: ClusterRelease) -> Release:
    """A revision as a provider sees it; a pending one has not been rendered yet, so its
    manifest is unknown (None), not empty."""
    manifest = orjson.loads(row.manifest) if row.status != "pending" else None
    return Release(
        revision=row.revision, version_id=row.version_id, values=row.values, manifest=manifest
    )


def _stored_manifest(row: ClusterRelease) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = orjson.loads(row.manifest) if row.status != "pending" else []
    return objects


def release_read(row: ClusterRelease, provider: Provider) -> ReleaseRead:
    """A revision as the API shows it: its values as its provider shows them (a VM package's
    password settings hidden; the manifest is read only for a provider that hides some)."""
    values = row.values
    if provider.redacts_values:
        values = provider.redact_values(values, _stored_manifest(row))
    return ReleaseRead(
        revision=row.revision,
        version_id=row.version_id,
        chart_version=row.chart_version,
        values=values,
        values_mode=ValuesMode(row.values_mode),
        status=row.status,
        job_id=row.job_id,
        create_time=row.create_time,
    )


def release_detail(row: ClusterRelease, provider: Provider) -> ReleaseDetail:
    """A revision with its rendered manifest as its provider shows it (Kubernetes: Secrets keep
    their keys, not their values; VM: password settings' values hidden)."""
    return ReleaseDetail(
        **release_read(row, provider).model_dump(),
        manifest=provider.redact_manifest(_stored_manifest(row)),
    )


async def get_release(
    session: AsyncSession, cluster_id: str, revision: int, access: Access
) -> tuple[Cluster, ClusterRelease]:
    cluster = await get_cluster(session, cluster_id, access)
    row = await session.get(ClusterRelease, (cluster_id, revision))
    if row is None:
        raise NotFound("release", f"{cluster_id}/{revision}")
    return cluster, row


_RELEASES = (
    select(ClusterRelease)
    .where(col(ClusterRelease.cluster_id) == bindparam("cluster_id"))
    .order_by(col(ClusterRelease.revision))
)


async def releases_of(session: AsyncSession, cluster_id: str) -> list[ClusterRelease]:
    rows = await session.execute(_RELEASES, {"cluster_id": cluster_id})
    return list(rows.scalars().all())


async def _check_params(
    session: AsyncSession, cluster: Cluster, action: str, params: dict[str, Any]
) -> None:
    """A node action's parameters against the cluster's roles and nodes as last found: a
    role or node it does not have is refused here, not by a failing job."""
    model = rule_of(action).params
    assert model is not None
    try:
        model.model_validate(params)
    except ValidationError as exc:
        raise BadRequest(
            f"invalid {action.replace('_', '-')} parameters: {exc.errors()[0]['msg']}",
            code="invalid_params",
        ) from None
    state = await state_of(session, cluster.cluster_id)
    role = params.get("role")
    if role is not None and role not in {r.role for r in state.roles}:
        raise Conflict(
            f"cluster {cluster.cluster_id!r} has no role {role!r}; its roles: "
            f"{sorted(r.role for r in state.roles)}",
            code="no_such_role",
            details={"role": role},
        )
    node_ids = params.get("node_ids")
    if node_ids is not None:
        have = {n.node_id for n in state.nodes}
        unknown = [n for n in node_ids if n not in have]
        if unknown:
            raise Conflict(
                f"cluster {cluster.cluster_id!r} has no node {', '.join(map(repr, unknown))}",
                code="no_such_node",
                details={"node_ids": unknown},
            )
        if have <= set(node_ids):
            raise Conflict(
                f"deleting {len(node_ids)} nodes would leave cluster {cluster.cluster_id!r} "
                "with none; delete the cluster instead",
                code="last_nodes",
            )


# A runtime with clusters in any of these statuses is in use.
async def live_clusters(session: AsyncSession, runtime_id: str) -> list[str]:
    """The ids of the live clusters on a runtime (a runtime's delete asks)."""
    rows = await session.execute(
        select(col(Cluster.cluster_id)).where(
            col(Cluster.runtime_id) == runtime_id, col(Cluster.status).in_(LIVE)
        )
    )
    return [r for (r,) in rows.all()]


async def delete_clusters(
    session: AsyncSession, cluster_ids: list[str], access: Access, *, providers: Providers
) -> list[str]:
    """Start a delete job for each cluster (a runtime's forced delete); returns the job ids.
    A cluster busy with another operation makes the whole request a 409."""
    started = []
    for cluster_id in cluster_ids:
        _, job = await start_action(session, cluster_id, "delete", access, providers=providers)
        started.append(job.job_id)
    return started


# --- previews (`"dry_run": true`) ---------------------------------------------------------------


@dataclass(frozen=True)
class PreviewTools:
    """The process resources a preview uses: the guarded HTTP client for chart packages, the
    secret box for credentials, where provider connections may go, and the providers."""

    http: httpx.AsyncClient
    secrets: SecretBox
    policy: AddressPolicy
    providers: Providers


class PreviewFailed(AppError):
    """The preview met what would fail the action's job (a chart that does not render, a
    quota too small, an object the server refuses), with the job's error code."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status_code = status_code


# The request's own content is at fault: the same body will fail again.
_INVALID = frozenset({"render_failed", "apply_failed", "invalid_manifest"})


def _preview_failed(exc: ProviderError) -> PreviewFailed:
    if exc.retryable:  # the provider could not be reached: 502, as the runtime routes answer
        return PreviewFailed(502, exc.code, exc.message)
    return PreviewFailed(422 if exc.code in _INVALID else 409, exc.code, exc.message)


async def preview_create(
    session: AsyncSession, data: ClusterCreate, access: Access, tools: PreviewTools
) -> Preview:
    """What create would do, after the checks create makes; nothing is written."""
    loaded = await load_create_rows(session, [(data.version_id, data.runtime_id)])
    version, repo, runtime = await create_checks(session, data, access, tools.providers)
    del loaded
    # The cluster does not exist: objects are named after a cluster id that only this
    # preview uses (create picks its own).
    cluster_id = ids.new_id(ids.CLUSTER)
    release = Release(revision=1, version_id=version.version_id, values=data.values, manifest=None)
    preview = await _preview(session, tools, "create", cluster_id, runtime, release, version, repo)
    preview.notes.append(
        "object names derived from the cluster id use a stand-in id; the create picks its own"
    )
    return preview


async def preview_action(
    session: AsyncSession,
    cluster_id: str,
    action: str,
    access: Access,
    tools: PreviewTools,
    *,
    version_id: str | None = None,
    values: dict[str, Any] | None = None,
    reset_values: bool = False,
    revision: int | None = None,
    params: dict[str, Any] | None = None,
) -> Preview:
    """What an action but create would do, after the same checks (a busy cluster included);
    no lock is taken and nothing is written."""
    cluster, inputs = await _checked_action(
        session,
        cluster_id,
        action,
        access,
        tools.providers,
        version_id,
        values,
        reset_values,
        revision,
        params,
    )
    if cluster.transition_status != Transition.NONE:
        raise Conflict(
            f"cluster {cluster.cluster_id!r} is busy ({cluster.transition_status}); wait for "
            f"job {cluster.job_id} to end",
            code="cluster_busy",
            details={"job_id": cluster.job_id},
        )
    history = await releases_of(session, cluster.cluster_id)
    deployed = next(
        (
            release_of(r)
            for r in history
            if r.revision == cluster.revision and r.status == "deployed"
        ),
        None,
    )
    runtime = await session.get(Runtime, cluster.runtime_id)
    if runtime is None:
        raise Conflict(f"the runtime of cluster {cluster_id!r} is gone", code="runtime_missing")
    release = None
    version = repo = None
    if inputs is not None:
        version = await session.get(AppVersion, inputs[0])
        repo = await session.get(Repo, version.repo_id) if version else None
        if version is None or repo is None:
            raise NotFound("app version", inputs[0])
        next_revision = max((r.revision for r in history), default=0) + 1
        release = Release(next_revision, inputs[0], inputs[1], None)
    return await _preview(
        session,
        tools,
        action,
        cluster.cluster_id,
        runtime,
        release,
        version,
        repo,
        deployed=deployed,
        history=tuple(release_of(r) for r in history if r.status != "pending"),
        state=await state_of(session, cluster.cluster_id),
        params=params,
    )


async def _preview(
    session: AsyncSession,
    tools: PreviewTools,
    action: str,
    cluster_id: str,
    runtime: Runtime,
    release: Release | None,
    version: AppVersion | None,
    repo: Repo | None,
    *,
    deployed: Release | None = None,
    history: tuple[Release, ...] = (),
    state: ClusterState | None = None,
    params: dict[str, Any] | None = None,
) -> Preview:
    row = await session.get(RuntimeCredential, runtime.credential_id)
    if row is None:
        raise Conflict(
            f"the credential of runtime {runtime.runtime_id} is gone", code="runtime_missing"
        )
    credential = open_credential(row, tools.secrets)

    async def fetch_package() -> bytes:
        if version is None or repo is None:
            raise ProviderError("render_failed", "nothing to render: the action deploys nothing")
        return await version_package(tools.http, tools.secrets, version, repo)

    request = PreviewRequest(
        action=action,
        params=params or {},
        cluster_id=cluster_id,
        zone=runtime.zone,
        credential=credential,
        release=release,
        deployed=deployed,
        history=history,
        state=state or ClusterState(),
        fetch_package=fetch_package,
        policy=tools.policy,
    )
    try:
        return await tools.providers.named(runtime.provider).preview(request)
    except ProviderError as exc:
        raise _preview_failed(exc) from None
