"""The repo-indexer manager: runs index tasks (the job engine's `run`, on its own durable
consumer so indexing scales apart from deploying), takes over index commands queued in the
form before the engine, and schedules due repos."""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlmodel import col

from openpitrix.bus.topology import REPO_INDEXER
from openpitrix.db.types import utcnow
from openpitrix.jobs.adapter import TaskRunner
from openpitrix.repos import service as repos
from openpitrix.repos.models import Repo
from openpitrix.repos.schemas import RepoStatus
from openpitrix.workers.service import Manager, Periodic, WorkerContext

log = logging.getLogger(__name__)

SCHEDULE_BATCH = 100
# The verb that ran a whole index job before the engine did; only commands queued before an
# upgrade still arrive on it.
LEGACY_INDEX = "index"


async def schedule_due_repos(ctx: WorkerContext) -> None:
    """Start index jobs for repos whose interval has passed.

    Every replica runs this; the guarded UPDATE of next_index_time lets exactly one replica
    claim each due repo per interval.
    """
    now = utcnow()
    async with ctx.db.read_session() as session:
        due = (
            (
                await session.execute(
                    select(col(Repo.repo_id))
                    .where(col(Repo.status) == RepoStatus.ACTIVE, col(Repo.next_index_time) <= now)
                    .order_by(col(Repo.next_index_time))
                    .limit(SCHEDULE_BATCH)
                )
            )
            .scalars()
            .all()
        )
    for repo_id in due:
        async with ctx.db.transaction() as session:
            repo = await session.get(Repo, repo_id)
            if repo is None:
                continue
            claimed = await session.execute(
                update(Repo)
                .where(col(Repo.repo_id) == repo_id, col(Repo.next_index_time) <= now)
                .values(next_index_time=now + repos.interval_of(repo, ctx.settings))
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount == 0:  # type: ignore[attr-defined]
                continue  # another replica took it
            await session.refresh(repo)
            job, started = await repos.request_index(
                session, repo, force=False, reason="scheduled", settings=ctx.settings
            )
            log.info("scheduled index repo=%s job=%s new=%s", repo_id, job.job_id, started)


def repo_indexer(tasks: TaskRunner) -> Manager:
    """The repo-indexer, running the index tasks the adapters route to it with the engine's
    `tasks` runner (handed in by the composition root)."""
    return Manager(
        name=REPO_INDEXER,
        commands={**tasks.commands, LEGACY_INDEX: tasks.hand_over},
        on_give_up=tasks.on_give_up,
        periodic=[
            Periodic(
                name="index-scheduler",
                interval=lambda s: s.indexer.scheduler_tick_seconds,
                run=schedule_due_repos,
            )
        ],
    )
