"""Runtime slots: at most `worker.runtime_concurrency` job tasks act on one target (a runtime)
at once, across every task-manager.

A task holds one of its target's slots from the moment it is dispatched until it ends
(`Task.slot = "held"`; a task dispatched outside any cap is marked "sent", so that it is not
sent twice either), or until it says that from then on it only watches the target (`give_back`:
a readiness wait, which polls the runtime's API now and then and changes nothing there). Its
slot is then "free": the slot goes to the next queued task, so a rollout that takes minutes
(or never becomes ready, until the task's timeout) does not keep other jobs from acting on the
runtime. The cap bounds the actions against a runtime's API at once, not the jobs watching it;
watchers are bounded by each task-manager's `worker.task_concurrency`. A watching task that is
run again (a retry, or resumed after its worker died) keeps its "free" mark: giving a slot back
is a promise that the task acts on nothing any more, in this run or a later one.

A task that cannot be dispatched for want of a slot is queued (`"waiting"`), and each task
ending on the target (or giving its slot back) dispatches the oldest queued ones. Slots go by
age (the task's creation, when its job was planned): a job advancing past a task that ends
takes a slot for its next task unless older tasks are queued, so a started job runs on to its
end before the jobs queued behind it start, rather than every job's next task queueing
behind every later job's first one. Every
decision about a target's slots is made under the target's lock, which callers take before any
row lock so no two transactions wait on each other in opposite orders. A periodic sweep
dispatches queued tasks whose target has room, should the cap be raised or a wake-up be missed.

A task is sent to the `run` command of the manager its job's adapter names for the task's
action (`JobAdapter.runner`): cluster tasks to the task-manager, repo index tasks to the
repo-indexer, repo delete tasks to the repo-manager.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    ScalarSelect,
    Select,
    Table,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix.bus.topology import command_subject
from openpitrix.db.locks import lock_name
from openpitrix.db.types import UTCDateTime
from openpitrix.jobs import service as jobs
from openpitrix.jobs.adapter import JobAdapters, SlotGiver
from openpitrix.jobs.commands import RunTask, dispatch_id
from openpitrix.jobs.models import Job, Task
from openpitrix.jobs.schemas import JobStatus
from openpitrix.outbox.writer import enqueue
from openpitrix.workers.service import WorkerContext

log = logging.getLogger(__name__)

RUN = "run"  # the verb of every manager that runs tasks
HELD, WAITING, SENT, FREE = "held", "waiting", "sent", "free"


def cap(ctx: WorkerContext) -> int:
    return ctx.settings.worker.runtime_concurrency


def take(task: Task, *, held: bool) -> None:
    """Mark the task dispatched, holding one of its target's slots or outside any cap, so that
    no later advance dispatches it again; the dispatch is numbered. (A runner that claims
    the task itself, a chained run, counts the dispatch in its claim: see `jobs.tasks`.)"""
    task.slot = HELD if held else SENT
    task.dispatches += 1


def dispatch(session: AsyncSession, task: Task, *, held: bool, runner: str) -> None:
    """Send the task to `runner`, the manager that runs its kind (in the caller's
    transaction), taken as `take` does: each dispatch has a message id of its own, and the
    runner ignores any earlier dispatch of the task still in flight."""
    take(task, held=held)
    send(session, task, command_subject(runner, RUN))


def send(session: AsyncSession, task: Task, subject: str) -> None:
    """The message of the task's current dispatch (`take`), to the runner's `subject`."""
    command = RunTask(job_id=task.job_id, task_id=task.task_id, dispatch=task.dispatches)
    enqueue(
        session, subject, command.model_dump(), msg_id=dispatch_id(task.task_id, task.dispatches)
    )


async def lock_target(session: AsyncSession, target: str) -> None:
    await lock_name(session, f"target:{target}")


async def lock_target_of(ctx: WorkerContext, session: AsyncSession, job_id: str) -> None:
    """Take the lock of the job's target, if capped (before any row lock)."""
    if not cap(ctx):
        return
    target = (
        await session.execute(select(col(Task.target)).where(col(Task.job_id) == job_id).limit(1))
    ).scalar()
    if target is not None:
        await lock_target(session, target)


_TASKS: Table = Task.__table__  # type: ignore[attr-defined]
_T = _TASKS.c


def _by_age(older: bool, time_param: str, id_param: str) -> ColumnElement[bool]:
    """Tasks older (or younger) than the one whose creation time and id are bound to these
    parameters: the order slots go in (`_queued`)."""
    when = bindparam(time_param, type_=UTCDateTime())
    ident: BindParameter[str] = bindparam(id_param)
    if older:
        return or_(_T.create_time < when, and_(_T.create_time == when, _T.task_id < ident))
    return or_(_T.create_time > when, and_(_T.create_time == when, _T.task_id > ident))


_AHEAD = _by_age(True, "before_time", "before_id")


def _count(*where: ColumnElement[bool]) -> ScalarSelect[int]:
    """How many of the target's tasks match: each a range of the (target, status, slot, ...)
    index, read without the table's rows."""
    return (
        select(func.count())
        .select_from(_TASKS)
        .where(_T.target == bindparam("target"), *where)
        .scalar_subquery()
    )


# A target's slots in one read (Core, built once): the held ones (tasks running there but
# those that gave theirs back, and tasks dispatched to start), the queued tasks, and the
# queued tasks ahead of a given one. Counted per status and slot rather than summed over the
# target's active tasks: a job's later tasks wait pending with no slot mark, and a sum read
# each of them.
_PENDING, _WORKING = JobStatus.PENDING.value, JobStatus.WORKING.value
_SLOTS = select(
    _count(_T.status == _WORKING, _T.slot != FREE) + _count(_T.status == _PENDING, _T.slot == HELD),
    _count(_T.status == _PENDING, _T.slot == WAITING),
    _count(_T.status == _PENDING, _T.slot == WAITING, _AHEAD),
)
_NEVER = (datetime.min.replace(tzinfo=UTC), "")  # ahead of every task: counts none


async def _slots(
    session: AsyncSession, target: str, ahead_of: tuple[datetime, str] = _NEVER
) -> tuple[int, int, int]:
    """(held, queued, queued ahead of `ahead_of`: a task's creation time and id)."""
    row = (
        await session.execute(
            _SLOTS, {"target": target, "before_time": ahead_of[0], "before_id": ahead_of[1]}
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


async def held_on(session: AsyncSession, target: str) -> int:
    """Slots of the target in use: tasks running there (but those that gave theirs back),
    and tasks dispatched to start."""
    return (await _slots(session, target))[0]


def _queued(target: str) -> Select[Task, str]:
    return (
        select(Task, col(Job.resource_kind))
        .join(Job, col(Job.job_id) == col(Task.job_id))
        .where(
            col(Task.target) == target,
            col(Task.status) == JobStatus.PENDING,
            col(Task.slot) == WAITING,
        )
        .order_by(col(Task.create_time), col(Task.task_id))
    )


async def room(ctx: WorkerContext, session: AsyncSession, target: str, ahead_of: Task) -> int:
    """Slots the tasks of a job may fill now: the free ones but those owed to tasks queued
    ahead of `ahead_of` (older ones: see the module's docstring)."""
    held, _, ahead = await _slots(session, target, (ahead_of.create_time, ahead_of.task_id))
    return cap(ctx) - held - ahead


_PREEMPT = (
    update(_TASKS)
    .where(
        _T.task_id
        == (
            select(_T.task_id)
            .where(
                _T.target == bindparam("on_target"),
                _T.status == JobStatus.PENDING,
                _T.slot == HELD,
                _by_age(False, "after_time", "after_id"),
            )
            .order_by(_T.create_time.desc(), _T.task_id.desc())
            .limit(1)
            .scalar_subquery()
        ),
        _T.status == JobStatus.PENDING,
        _T.slot == HELD,
    )
    .values(slot=WAITING)
    .returning(_T.task_id)
)


async def preempt(session: AsyncSession, task: Task) -> bool:
    """Give `task` the slot of the youngest task on its target that was dispatched but has not
    started (it waits in the bus for a task-manager's free task slot): that one is queued
    again, and dispatched anew as slots free up; its message, when it arrives, finds it queued
    (a claim checks the slot mark it read) and leaves it so. Slots go by age, and a dispatched
    task that has not started acts on nothing yet: so a started job's next task is not kept
    behind the first tasks of jobs planned after it (the caller holds the target's lock)."""
    assert task.target is not None
    row = (
        await session.execute(
            _PREEMPT,
            {"on_target": task.target, "after_time": task.create_time, "after_id": task.task_id},
        )
    ).first()
    if row is not None:
        log.info("task=%s gave its slot on %s to older task=%s", row[0], task.target, task.task_id)
    return row is not None


def queue(ctx: WorkerContext, session: AsyncSession, job: Job, task: Task) -> None:
    """Queue the task for a free slot on its target; a task ending there dispatches it."""
    assert task.target is not None
    task.slot = WAITING
    jobs.report_progress(
        session,
        job,
        task,
        f"waiting for a free slot on {task.target} (at most {cap(ctx)} tasks at once)",
    )


async def may_start(ctx: WorkerContext, session: AsyncSession, job: Job, task: Task) -> bool:
    """Whether a pending task may start now. A dispatched one holds its slot; one that was
    not (dispatched before the cap was set) takes a free slot or is queued, under the target's
    lock so two task-managers cannot both take the last one."""
    limit = cap(ctx)
    if task.target is None or limit == 0 or task.slot == HELD:
        return True
    await lock_target(session, task.target)
    if await held_on(session, task.target) < limit:
        return True
    if task.slot != WAITING:
        queue(ctx, session, job, task)
    return False


async def wake(
    ctx: WorkerContext, session: AsyncSession, target: str, adapters: JobAdapters
) -> int:
    """Dispatch the oldest queued tasks of `target`, as many as it has free slots (the caller
    holds the target's lock); how many were dispatched."""
    limit = cap(ctx)
    free = None
    if limit:
        held, waiting, _ = await _slots(session, target)
        free = min(limit - held, waiting)
        if free <= 0:
            return 0
    queued: Sequence[Any] = (await session.execute(_queued(target).limit(free))).all()
    for task, kind in queued:
        dispatch(session, task, held=bool(limit), runner=adapters.runner(kind, task.action))
    return len(queued)


def claim_mark(task: Task) -> str:
    """The slot mark a task is claimed with: "held" on a target, but "free" for a task that
    gave its slot back in an earlier run (it only watches; see the module's docstring)."""
    if task.target is None:
        return ""
    return FREE if task.slot == FREE else HELD


async def give_back(
    ctx: WorkerContext, adapters: JobAdapters, task_id: str, target: str | None
) -> None:
    """The running task only watches its target from now on: its slot goes to the oldest
    queued task, in one transaction under the target's lock (the mark and the dispatches it
    allows commit together, so a crash loses neither). Idempotent: a task whose slot is free
    already, or that ended, changes nothing."""
    if target is None or not cap(ctx):
        return
    async with ctx.db.transaction() as session:
        await lock_target(session, target)
        freed = await session.execute(
            update(Task)
            .where(
                col(Task.task_id) == task_id,
                col(Task.status) == JobStatus.WORKING,
                col(Task.slot) == HELD,
            )
            .values(slot=FREE)
            .execution_options(synchronize_session=False)
        )
        if not getattr(freed, "rowcount", 0):
            return
        woken = await wake(ctx, session, target, adapters)
    if woken:
        log.info("task=%s gave its slot on %s back; woke %d waiting tasks", task_id, target, woken)


def giver(ctx: WorkerContext, adapters: JobAdapters, task: Task) -> SlotGiver:
    """`give_back` for one running task: what its adapter hands the provider."""
    return partial(give_back, ctx, adapters, task.task_id, task.target)


async def release(
    ctx: WorkerContext, session: AsyncSession, job_id: str, adapters: JobAdapters
) -> None:
    """A job's tasks that have not started give up their slots and places in the queue, as
    the job ends or is cancelled (the caller holds the target's lock)."""
    left = (
        (
            await session.execute(
                select(Task).where(
                    col(Task.job_id) == job_id,
                    col(Task.status) == JobStatus.PENDING,
                    col(Task.slot) != "",
                )
            )
        )
        .scalars()
        .all()
    )
    freed = next((t.target for t in left if t.slot == HELD), None)
    for task in left:
        task.slot = ""
    if freed is not None and cap(ctx):
        await session.flush()
        await wake(ctx, session, freed, adapters)


async def sweep(ctx: WorkerContext, adapters: JobAdapters) -> None:
    """Periodic: dispatch queued tasks on targets that have room (after the cap was raised,
    or should a wake-up have been missed). Several task-managers sweeping at once dispatch
    each task once: a woken task is no longer queued for the next, under the target's lock."""
    async with ctx.db.read_session() as session:
        targets = (
            await session.execute(
                select(col(Task.target))
                .where(col(Task.status) == JobStatus.PENDING, col(Task.slot) == WAITING)
                .distinct()
            )
        ).scalars()
        names = [t for t in targets if t is not None]
    for target in names:
        async with ctx.db.transaction() as session:
            await lock_target(session, target)
            woken = await wake(ctx, session, target, adapters)
        if woken:
            log.info("woke %d waiting tasks on %s", woken, target)
