"""The job-manager: plans a job through its resource's adapter, dispatches the pending tasks of
its first unfinished layer, and ends it (a failed task, a cancel request, or all layers done).

`job-manager.advance {job_id}` is its one command: a job's first step, and the steps a cancel
or a retry asks for. Each task is dispatched to the `run` command of the manager its adapter
names (`JobAdapter.runner`); that manager, settling the task, takes the job's next step itself
in the same transaction (`advance_locked`, see `jobs.tasks`), so a task's end costs no message
and no transaction here. All state is in the database and every step is a guarded transition,
so an advance delivered twice, or redelivered after a worker died, converges on the same
outcome. Each message has an id naming its cause, distinct for the job's whole life: see
`jobs.commands`. Tasks acting on a shared runtime are capped across all task-managers: see
`jobs.slots`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from openpitrix import ids
from openpitrix.bus.topology import JOB_MANAGER, command_subject
from openpitrix.jobs import service as jobs
from openpitrix.jobs import slots
from openpitrix.jobs.adapter import JobAdapter, JobAdapters
from openpitrix.jobs.commands import ADVANCE, JobCommand, handover_id
from openpitrix.jobs.models import Job, Task
from openpitrix.jobs.plan import PlannedTask, TaskError
from openpitrix.jobs.schemas import TERMINAL_STATUSES, ErrorInfo, JobStatus
from openpitrix.outbox.writer import enqueued
from openpitrix.workers.service import (
    Command,
    Delivery,
    Manager,
    PermanentError,
    WorkerContext,
)

DONE_OK = (JobStatus.SUCCESSFUL.value,)


@dataclass
class Chain:
    """A task runner's offer, made as it settles a task, to run the job's next task itself:
    the first task of the next layer that would be sent to `subject` (the command subject the
    runner consumes) is not sent but left in `task`, for the runner to claim (and count as
    dispatched) in the same transaction (see `jobs.tasks`)."""

    subject: str
    task: Task | None = None


def _layers(tasks: Sequence[Task]) -> list[list[Task]]:
    by_layer: dict[int, list[Task]] = {}
    for task in tasks:
        by_layer.setdefault(task.layer, []).append(task)
    return [by_layer[k] for k in sorted(by_layer)]


def _settled(task: Task) -> bool:
    return task.status in DONE_OK or (task.status == JobStatus.FAILED and task.failure_allowed)


async def _end(
    ctx: WorkerContext,
    session: AsyncSession,
    adapters: JobAdapters,
    adapter: JobAdapter,
    job: Job,
    status: JobStatus,
    message: str,
    error: ErrorInfo | None = None,
) -> None:
    if error is not None:
        # Set before the adapter records the outcome on its resource (a repo's last error).
        job.error_code, job.error_message = error.code, error.message
    # The resource's own change comes first, so the job's stream (which ends at the job's
    # terminal event) carries it too.
    await adapter.job_ended(session, job, status)
    jobs.finish_job(session, job, status, message=message, error=error)
    await slots.release(ctx, session, job.job_id, adapters)


async def advance(
    ctx: WorkerContext, delivery: Delivery, command: JobCommand, *, adapters: JobAdapters
) -> None:
    job_id = command.job_id
    async with ctx.db.transaction() as session:
        await slots.lock_target_of(ctx, session, job_id)
        job = await jobs.lock_job(session, job_id)
        if job is None or job.status in TERMINAL_STATUSES:
            return
        await advance_locked(ctx, session, adapters, job, await jobs.tasks_of(session, job_id))


async def advance_locked(
    ctx: WorkerContext,
    session: AsyncSession,
    adapters: JobAdapters,
    job: Job,
    tasks: list[Task],
    *,
    chain: Chain | None = None,
) -> None:
    """The job's next step, in the caller's transaction: plan it (no tasks yet), start it,
    cancel it, end it (a failed task, or every layer settled), or dispatch the pending tasks
    of its first unsettled layer. The caller holds the job's target lock (if capped) and then
    the job's row, and passes the job's tasks. A task runner settling a task advances its job
    here in the same transaction, so a task's end needs no message to the job-manager; with
    `chain` it takes the job's next task to run itself."""
    job_id = job.job_id
    adapter = adapters.get(job.resource_kind)
    if adapter is None:
        raise PermanentError("no_engine", f"no job engine for {job.resource_kind!r} jobs")
    if not tasks:
        try:
            layers = await adapter.plan(session, job)
        except TaskError as exc:
            await _end(
                ctx,
                session,
                adapters,
                adapter,
                job,
                JobStatus.FAILED,
                exc.message,
                ErrorInfo(code=exc.code, message=exc.message),
            )
            return
        target = await adapter.target(session, job)
        if target is not None and slots.cap(ctx):
            # After the job's row here: no one else can hold a new job's row and wait on
            # the target's lock.
            await slots.lock_target(session, target)
        tasks = _insert_tasks(session, job, layers, target)
        await session.flush()
    if job.status == JobStatus.PENDING:
        started = await jobs.start_job(session, job_id, ctx.executor)
        if started is None:
            return
        job = started
    if job.cancel_requested:
        await _cancel(ctx, session, adapters, adapter, job, tasks)
        return
    failed = next(
        (t for t in tasks if t.status == JobStatus.FAILED and not t.failure_allowed), None
    )
    if failed is not None:
        await _end(
            ctx,
            session,
            adapters,
            adapter,
            job,
            JobStatus.FAILED,
            f"task {failed.action} failed: {failed.error_message}",
            ErrorInfo(code=failed.error_code or "task_failed", message=failed.error_message or ""),
        )
        return
    room: int | None = None  # slots of the target the job may fill now (`slots.room`)
    task_layers = _layers(tasks)
    for number, layer in enumerate(task_layers):
        if all(_settled(t) for t in layer):
            continue
        job.progress = int(100 * number / len(task_layers))
        for task in layer:
            if task.status != JobStatus.PENDING or task.slot:
                continue  # running, ended, dispatched, or queued for a free slot
            capped = task.target is not None and slots.cap(ctx) > 0
            if capped:
                assert task.target is not None
                if room is None:
                    room = await slots.room(ctx, session, task.target, ahead_of=task)
                if room <= 0 and chain is not None and await slots.preempt(session, task):
                    room = 1  # a younger job's task, not started yet, gave its slot up
                if room <= 0:
                    slots.queue(ctx, session, job, task)
                    continue
                room -= 1
            runner = adapter.runner(task.action)
            if (
                chain is not None
                and chain.task is None
                and chain.subject == command_subject(runner, slots.RUN)
            ):
                chain.task = task  # counted as dispatched as the runner claims it
            else:
                slots.dispatch(session, task, held=capped, runner=runner)
        return
    await _end(ctx, session, adapters, adapter, job, JobStatus.SUCCESSFUL, f"{job.action} done")


def _insert_tasks(
    session: AsyncSession, job: Job, layers: list[list[PlannedTask]], target: str | None
) -> list[Task]:
    tasks = []
    for number, layer in enumerate(layers):
        for plan in layer:
            task = Task(
                task_id=ids.new_id(ids.TASK),
                job_id=job.job_id,
                layer=number,
                action=plan.action,
                params=plan.params,
                failure_allowed=plan.failure_allowed,
                timeout_seconds=plan.timeout_seconds,
                target=target,
            )
            session.add(task)
            tasks.append(task)
    return tasks


async def _cancel(
    ctx: WorkerContext,
    session: AsyncSession,
    adapters: JobAdapters,
    adapter: JobAdapter,
    job: Job,
    tasks: Sequence[Task],
) -> None:
    # Pending tasks give their slots and queue places back before they are cancelled.
    await slots.release(ctx, session, job.job_id, adapters)
    for task in tasks:
        if task.status == JobStatus.PENDING:
            jobs.finish_task(session, job, task, JobStatus.CANCELLED)
    if any(t.status == JobStatus.WORKING for t in tasks):
        return  # the running task ends first; its report asks for another advance
    await _end(ctx, session, adapters, adapter, job, JobStatus.CANCELLED, "cancelled on request")


async def give_up_job(
    ctx: WorkerContext, delivery: Delivery, code: str, message: str, *, adapters: JobAdapters
) -> None:
    if not isinstance(delivery.payload, JobCommand):
        return
    job_id = delivery.payload.job_id
    async with ctx.db.transaction() as session:
        await slots.lock_target_of(ctx, session, job_id)
        job = await jobs.lock_job(session, job_id)
        if job is None or job.status in TERMINAL_STATUSES:
            return
        adapter = adapters.get(job.resource_kind)
        error = ErrorInfo(code=code, message=message)
        if adapter is None:
            jobs.finish_job(session, job, JobStatus.FAILED, message=message, error=error)
        else:
            await _end(ctx, session, adapters, adapter, job, JobStatus.FAILED, message, error)


async def hand_over(ctx: WorkerContext, delivery: Delivery, command: JobCommand) -> None:
    """A job's first command in the form from before its kind ran on the engine (queued before
    an upgrade): the job-manager takes the job over. A task an old worker claimed and never
    ended (it died) runs again from the start, as a redelivered command would have run it."""
    async with ctx.db.transaction() as session:
        job = await jobs.lock_job(session, command.job_id)
        if job is None or job.status in TERMINAL_STATUSES:
            return
        msg_id = handover_id(job.job_id)
        if await enqueued(session, msg_id):
            return  # handed over already: this is the command coming back
        for task in await jobs.tasks_of(session, job.job_id):
            if task.status == JobStatus.WORKING and task.dispatches == 0:
                task.status = JobStatus.PENDING
        jobs.request_advance(session, job.job_id, msg_id=msg_id)


def job_manager(adapters: JobAdapters) -> Manager:
    """The job-manager, running the jobs of the resource kinds in `adapters`."""
    return Manager(
        name=JOB_MANAGER,
        commands={ADVANCE: Command(JobCommand, partial(advance, adapters=adapters))},
        on_give_up=partial(give_up_job, adapters=adapters),
    )
