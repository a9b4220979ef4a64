"""Deploys as a group commit (db.group_commit): the deploys a process receives together are
checked one by one and written in one transaction.

Each deploy is checked exactly as alone, inside the transaction that writes it (on SQLite the
write lock is held from the first read, so what was checked is what is written). Only the
reads are shared: the batch's versions, repos, runtimes and Idempotency-Keys are loaded in a
statement per table, and the rows of all its deploys go out in one flush.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from openpitrix.apps.models import AppVersion
from openpitrix.clusters.schemas import ClusterCreate, ClusterJobAccepted
from openpitrix.clusters.service import add_cluster, create_checks, load_create_rows
from openpitrix.db.engine import Database
from openpitrix.db.group_commit import GroupCommit
from openpitrix.iam.access import Access
from openpitrix.idempotency import service as idempotency
from openpitrix.idempotency.models import IdempotentRequest
from openpitrix.providers.registry import Providers
from openpitrix.runtimes.models import Runtime

ACCEPTED = 202


@dataclass(frozen=True)
class Deploy:
    """One POST /v1/clusters: what it asks, who asks, and its Idempotency-Key if any."""

    data: ClusterCreate
    access: Access
    providers: Providers
    key: str | None = None
    route: str = ""  # method and path: one key answers one request


@dataclass(frozen=True)
class Deployed:
    cluster_id: str
    job_id: str
    replayed: bool = False  # answered from an earlier request with the same key


@dataclass
class _New:
    """A deploy that passed its checks."""

    deploy: Deploy
    version: AppVersion
    runtime: Runtime
    digest: str = ""  # of its Idempotency-Key's request
    done: Deployed | None = None


@dataclass(frozen=True)
class _Repeat:
    """A deploy with the key of an earlier deploy of the same batch."""

    first: _New


# What a deploy comes to: written anew, a repeat within the batch, or an earlier request's
# answer (`Deployed`, replayed).
_Plan = _New | _Repeat | Deployed


@dataclass(frozen=True)
class _Loaded:
    rows: Sequence[object]  # held for the identity map (load_create_rows)
    keys: dict[tuple[str, str], IdempotentRequest]
    # The batch's checked deploys by key: a repeat in the same batch is answered with the
    # first one's answer (the keys loaded above are only the committed ones).
    in_batch: dict[tuple[str, str], _New]


class DeploySteps:
    """`BatchSteps` of a deploy."""

    async def preload(self, session: AsyncSession, items: Sequence[Deploy]) -> _Loaded:
        rows = await load_create_rows(
            session, [(item.data.version_id, item.data.runtime_id) for item in items]
        )
        keys = await idempotency.load_keys(
            session, [(item.access.owner, item.key) for item in items if item.key is not None]
        )
        return _Loaded(rows, keys, {})

    async def check(self, session: AsyncSession, loaded: _Loaded, item: Deploy) -> _Plan:
        if item.key is None:
            version, _, runtime = await create_checks(
                session, item.data, item.access, item.providers
            )
            return _New(item, version, runtime)
        idempotency.check_key(item.key)
        digest = idempotency.request_hash(item.route, item.data)
        owned_key = (item.access.owner, item.key)
        found = loaded.keys.get(owned_key)
        if found is not None:
            answer = idempotency.replay_of(found, item.route, digest).body
            accepted = ClusterJobAccepted.model_validate(answer)
            return Deployed(accepted.cluster_id, accepted.job_id, replayed=True)
        first = loaded.in_batch.get(owned_key)
        if first is not None:
            idempotency.check_same_request((first.deploy.route, first.digest), (item.route, digest))
            return _Repeat(first)
        version, _, runtime = await create_checks(session, item.data, item.access, item.providers)
        plan = loaded.in_batch[owned_key] = _New(item, version, runtime, digest)
        return plan

    async def write(self, session: AsyncSession, plan: _Plan) -> Deployed:
        if isinstance(plan, Deployed):
            return plan
        if isinstance(plan, _Repeat):
            first = plan.first.done
            assert first is not None  # written before it: writes go in check order
            return Deployed(first.cluster_id, first.job_id, replayed=True)
        deploy = plan.deploy
        cluster_id, job_id = add_cluster(
            session, deploy.data, deploy.access, plan.version, plan.runtime
        )
        plan.done = Deployed(cluster_id, job_id)
        if deploy.key is not None:
            idempotency.remember(
                session,
                deploy.access.owner,
                deploy.key,
                deploy.route,
                plan.digest,
                ACCEPTED,
                ClusterJobAccepted(cluster_id=cluster_id, job_id=job_id),
            )
        return plan.done


Deploys = GroupCommit[Deploy, _Loaded, _Plan, Deployed]


def deploys(db: Database) -> Deploys:
    """The process's queue of deploys (one per gateway, built in its lifespan)."""
    return GroupCommit(db, DeploySteps())
