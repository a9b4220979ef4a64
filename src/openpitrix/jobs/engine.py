"""The job engine: the job-manager plans and advances jobs layer by layer, the task-manager runs
one task at a time through the job's resource adapter (which calls the provider).

All state is in the database and every step is a guarded transition, so a command delivered
twice, or redelivered after a worker died, converges on the same outcome:

- `job-manager.advance {job_id}`: plan if needed, then dispatch the pending tasks of the first
  unfinished layer, or end the job (failed task, cancel request, or all layers done).
- `task-manager.run {job_id, task_id, dispatch}`: claim the task, run it with heartbeats and a
  timeout, record the outcome and ask the job-manager to advance.

Each message has an id naming its cause, distinct for the job's whole life: see
`jobs.commands`. Tasks acting on a shared runtime are capped across all task-managers: see
`jobs.slots`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix import ids
from openpitrix.bus.topology import JOB_MANAGER, TASK_MANAGER, command_subject
from openpitrix.errors import Conflict
from openpitrix.iam.access import Access
from openpitrix.jobs import service as jobs
from openpitrix.jobs import slots
from openpitrix.jobs.commands import (
    JobCommand,
    RunTask,
    cancel_id,
    retry_id,
    task_end_id,
)
from openpitrix.jobs.models import Job, Task
from openpitrix.jobs.plan import PlannedTask, TaskError
from openpitrix.jobs.schemas import TERMINAL_STATUSES, ErrorInfo, JobStatus
from openpitrix.outbox.writer import enqueue
from openpitrix.workers.service import (
    Command,
    Delivery,
    Manager,
    Periodic,
    PermanentError,
    RetryableError,
    WorkerContext,
)

log = logging.getLogger(__name__)

ADVANCE = "advance"
RUN = slots.RUN  # the task-manager's verb
CANCEL_POLL_SECONDS = 1.0
DONE_OK = (JobStatus.SUCCESSFUL.value,)


class JobAdapter(Protocol):
    """What the engine needs from a resource kind whose jobs it runs (clusters today)."""

    resource_kind: str

    async def plan(self, session: AsyncSession, job: Job) -> list[list[PlannedTask]]: ...

    async def target(self, session: AsyncSession, job: Job) -> str | None:
        """What the job's tasks act on that other jobs share (a runtime), for the cap."""
        ...

    def run_task(
        self, ctx: WorkerContext, job: Job, task: Task, report: Reporter
    ) -> Awaitable[dict[str, Any]]: ...

    async def task_succeeded(
        self, session: AsyncSession, job: Job, task: Task, result: dict[str, Any]
    ) -> dict[str, Any]:
        """Persist what the task produced; returns the result to show on the task."""
        ...

    async def job_ended(self, session: AsyncSession, job: Job, status: JobStatus) -> None:
        """Release the resource's lock and record the outcome on it."""
        ...

    async def relock(self, session: AsyncSession, job: Job) -> bool:
        """Take the resource's lock again for a retried job; False when another job holds it."""
        ...


Reporter = Callable[[str, int | None, dict[str, Any]], Awaitable[None]]
ADAPTERS: dict[str, JobAdapter] = {}
# Tasks this process is running: a command redelivered to the process still running it (its
# heartbeats stalled past the ack wait) must not start the task a second time alongside.
_RUNNING: set[str] = set()


def register(adapter: JobAdapter) -> None:
    ADAPTERS[adapter.resource_kind] = adapter


def request_advance(session: AsyncSession, job_id: str, *, msg_id: str) -> None:
    """Ask the job-manager to look at the job again (in the caller's transaction). `msg_id`
    names the cause (`jobs.commands`): a redelivered cause does not multiply advances."""
    enqueue(
        session,
        command_subject(JOB_MANAGER, ADVANCE),
        JobCommand(job_id=job_id).model_dump(),
        msg_id=msg_id,
    )


async def _lock_job(session: AsyncSession, job_id: str) -> Job | None:
    # FOR UPDATE on PostgreSQL: two advances of one job (two replicas) queue here. SQLite's
    # writers are serialized already.
    result = await session.execute(
        select(Job)
        .where(col(Job.job_id) == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


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
    adapter: JobAdapter,
    job: Job,
    status: JobStatus,
    message: str,
    error: ErrorInfo | None = None,
) -> None:
    # The resource's own change comes first, so the job's stream (which ends at the job's
    # terminal event) carries it too.
    await adapter.job_ended(session, job, status)
    jobs.finish_job(session, job, status, message=message, error=error)
    await slots.release(ctx, session, job.job_id)


async def advance(ctx: WorkerContext, delivery: Delivery, command: JobCommand) -> None:
    job_id = command.job_id
    async with ctx.db.transaction() as session:
        await slots.lock_target_of(ctx, session, job_id)
        job = await _lock_job(session, job_id)
        if job is None or job.status in TERMINAL_STATUSES:
            return
        adapter = ADAPTERS.get(job.resource_kind)
        if adapter is None:
            raise PermanentError("no_engine", f"no job engine for {job.resource_kind!r} jobs")
        tasks = await jobs.tasks_of(session, job_id)
        if not tasks:
            try:
                layers = await adapter.plan(session, job)
            except TaskError as exc:
                await _end(
                    ctx,
                    session,
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
            await _cancel(ctx, session, adapter, job, tasks)
            return
        failed = next(
            (t for t in tasks if t.status == JobStatus.FAILED and not t.failure_allowed), None
        )
        if failed is not None:
            await _end(
                ctx,
                session,
                adapter,
                job,
                JobStatus.FAILED,
                f"task {failed.action} failed: {failed.error_message}",
                ErrorInfo(
                    code=failed.error_code or "task_failed", message=failed.error_message or ""
                ),
            )
            return
        task_layers = _layers(tasks)
        for number, layer in enumerate(task_layers):
            if all(_settled(t) for t in layer):
                continue
            job.progress = int(100 * number / len(task_layers))
            room: int | None = None
            for task in layer:
                if task.status != JobStatus.PENDING or task.slot:
                    continue  # running, ended, dispatched, or queued for a free slot
                capped = task.target is not None and slots.cap(ctx) > 0
                if capped:
                    assert task.target is not None
                    if room is None:
                        room = await slots.room(ctx, session, task.target)
                    if room <= 0:
                        slots.queue(ctx, session, job, task)
                        continue
                    room -= 1
                slots.dispatch(session, task, held=capped)
            return
        await _end(ctx, session, adapter, job, JobStatus.SUCCESSFUL, f"{job.action} done")


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
    ctx: WorkerContext, session: AsyncSession, adapter: JobAdapter, job: Job, tasks: Sequence[Task]
) -> None:
    # Pending tasks give their slots and queue places back before they are cancelled.
    await slots.release(ctx, session, job.job_id)
    for task in tasks:
        if task.status == JobStatus.PENDING:
            jobs.finish_task(session, job, task, JobStatus.CANCELLED)
    if any(t.status == JobStatus.WORKING for t in tasks):
        return  # the running task ends first; its report asks for another advance
    await _end(ctx, session, adapter, job, JobStatus.CANCELLED, "cancelled on request")


async def run_task(ctx: WorkerContext, delivery: Delivery, command: RunTask) -> None:
    job_id, task_id = command.job_id, command.task_id
    async with ctx.db.transaction() as session:
        job = await session.get(Job, job_id, populate_existing=True)
        task = await session.get(Task, task_id, populate_existing=True)
        if job is None or task is None or job.status in TERMINAL_STATUSES:
            return
        if task.status in TERMINAL_STATUSES:
            return
        if 0 < command.dispatch < task.dispatches:
            # A later dispatch (the task was cancelled before this one reached a worker, then
            # retried) supersedes this copy: the task runs from that one, once.
            log.info("task=%s dispatch %d superseded; ignored", task_id, command.dispatch)
            return
        if task_id in _RUNNING:
            # Come back once the run here has ended (then the task is settled and this is a
            # no-op), or, should this process die meanwhile, to resume it elsewhere.
            raise RetryableError(
                f"task {task_id} is still running in this worker",
                delay=ctx.settings.bus.ack_wait_seconds,
            )
        if job.cancel_requested:
            target = task.target if slots.cap(ctx) else None
            if target is not None:
                await slots.lock_target(session, target)
            jobs.finish_task(session, job, task, JobStatus.CANCELLED)
            request_advance(
                session,
                job_id,
                msg_id=task_end_id(task_id, task.dispatches, JobStatus.CANCELLED),
            )
            if target is not None:
                await session.flush()
                await slots.wake(ctx, session, target)
            return
        # A task already working was claimed by an earlier delivery. If this is that message
        # coming back (its worker died or timed out), resume; a second copy of a fresh
        # dispatch must not run the task twice at once.
        if task.status == JobStatus.WORKING and delivery.num_delivered == 1:
            return
        # A dispatched or resumed task holds its slot already; any other needs a free one.
        if task.status == JobStatus.PENDING and not await slots.may_start(ctx, session, job, task):
            return
        claimed = await session.execute(
            update(Task)
            .where(col(Task.task_id) == task_id, col(Task.status) == task.status)
            .values(status=JobStatus.WORKING, slot=slots.HELD if task.target else "")
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return
        await session.refresh(task)
        await jobs.start_task(session, job, task, ctx.executor)
    adapter = ADAPTERS[job.resource_kind]
    running_job, running_task = job, task

    async def report(message: str, progress: int | None, data: dict[str, Any]) -> None:
        async with ctx.db.transaction() as s:
            jobs.report_progress(
                s, running_job, running_task, message, progress=progress, data=data
            )

    _RUNNING.add(task_id)
    try:
        await _run_claimed(ctx, adapter, job, task, report)
    finally:
        _RUNNING.discard(task_id)


async def _run_claimed(
    ctx: WorkerContext, adapter: JobAdapter, job: Job, task: Task, report: Reporter
) -> None:
    job_id, task_id = job.job_id, task.task_id
    timeout = task.timeout_seconds or ctx.settings.worker.task_timeout_seconds
    try:
        # The consumer keeps the command ours with in_progress beats while this runs.
        result = await _until_cancelled(
            ctx, job_id, asyncio.wait_for(adapter.run_task(ctx, job, task, report), timeout)
        )
    except _Cancelled:
        await _settle(ctx, job_id, task_id, JobStatus.CANCELLED)
        return
    except TaskError as exc:
        if exc.retryable and task.attempts < ctx.settings.worker.task_max_attempts:
            delay = min(2 ** (task.attempts - 1) * ctx.settings.worker.task_retry_base_seconds, 60)
            async with ctx.db.transaction() as s:
                jobs.report_progress(
                    s,
                    job,
                    task,
                    f"{exc.message}; retrying in {delay:.0f} s",
                    data={},
                )
            raise RetryableError(exc.message, delay=delay) from None
        error = ErrorInfo(code=exc.code, message=exc.message)
        await _settle(ctx, job_id, task_id, JobStatus.FAILED, error=error)
        return
    except TimeoutError:
        error = ErrorInfo(code="task_timeout", message=f"task exceeded {timeout:.0f} s")
        await _settle(ctx, job_id, task_id, JobStatus.FAILED, error=error)
        return
    await _settle(ctx, job_id, task_id, JobStatus.SUCCESSFUL, result=result, adapter=adapter)


class _Cancelled(Exception):
    """The job was asked to cancel while its task ran."""


async def _until_cancelled(
    ctx: WorkerContext, job_id: str, work: Awaitable[dict[str, Any]]
) -> dict[str, Any]:
    """Run the task, stopping it when its job is asked to cancel (checked every
    CANCEL_POLL_SECONDS), so a cancel does not wait for a long readiness wait to time out."""
    runner = asyncio.ensure_future(work)

    async def cancelled() -> None:
        while True:
            await asyncio.sleep(CANCEL_POLL_SECONDS)
            async with ctx.db.read_session() as session:
                flag = (
                    await session.execute(
                        select(col(Job.cancel_requested)).where(col(Job.job_id) == job_id)
                    )
                ).scalar()
            if flag:
                return

    watcher = asyncio.ensure_future(cancelled())
    try:
        done, _ = await asyncio.wait({runner, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (runner, watcher):
            if not pending.done():
                pending.cancel()
    if runner in done:
        await asyncio.gather(watcher, return_exceptions=True)
        return runner.result()
    await asyncio.gather(runner, return_exceptions=True)
    raise _Cancelled


async def _settle(
    ctx: WorkerContext,
    job_id: str,
    task_id: str,
    status: JobStatus,
    *,
    error: ErrorInfo | None = None,
    result: dict[str, Any] | None = None,
    adapter: JobAdapter | None = None,
    dispatch: int = 0,
) -> None:
    """Record a task's outcome and ask the job-manager to advance, in one transaction. A task
    that already ended (a duplicate outcome), or an outcome of a superseded `dispatch`, is
    left alone."""
    async with ctx.db.transaction() as session:
        job = await session.get(Job, job_id, populate_existing=True)
        task = await session.get(Task, task_id, populate_existing=True)
        if job is None or task is None or task.status in TERMINAL_STATUSES:
            return
        if 0 < dispatch < task.dispatches:
            return
        if task.target is not None:
            # The target's lock before any row lock, in the order claims take them: a claim
            # holding it may be waiting for this job's row.
            await slots.lock_target(session, task.target)
        if result is not None and adapter is not None:
            # What the task produced is persisted by its adapter; the task shows a summary.
            result = await adapter.task_succeeded(session, job, task, result)
        jobs.finish_task(session, job, task, status, result=result, error=error)
        # One end per dispatch: a task ends again only after a retry dispatched it anew.
        request_advance(session, job_id, msg_id=task_end_id(task_id, task.dispatches, status))
        if task.target is not None:
            await session.flush()
            await slots.wake(ctx, session, task.target)


async def give_up_task(ctx: WorkerContext, delivery: Delivery, code: str, message: str) -> None:
    """The task's command ran out of deliveries: the task fails and the job moves on."""
    if isinstance(delivery.payload, RunTask):
        error = ErrorInfo(code=code, message=message)
        command = delivery.payload
        await _settle(
            ctx,
            command.job_id,
            command.task_id,
            JobStatus.FAILED,
            error=error,
            dispatch=command.dispatch,
        )


async def give_up_job(ctx: WorkerContext, delivery: Delivery, code: str, message: str) -> None:
    if not isinstance(delivery.payload, JobCommand):
        return
    job_id = delivery.payload.job_id
    async with ctx.db.transaction() as session:
        await slots.lock_target_of(ctx, session, job_id)
        job = await _lock_job(session, job_id)
        if job is None or job.status in TERMINAL_STATUSES:
            return
        adapter = ADAPTERS.get(job.resource_kind)
        error = ErrorInfo(code=code, message=message)
        if adapter is None:
            jobs.finish_job(session, job, JobStatus.FAILED, message=message, error=error)
        else:
            await _end(ctx, session, adapter, job, JobStatus.FAILED, message, error)


def job_manager() -> Manager:
    return Manager(
        name=JOB_MANAGER,
        commands={ADVANCE: Command(JobCommand, advance)},
        on_give_up=give_up_job,
    )


def task_manager() -> Manager:
    return Manager(
        name=TASK_MANAGER,
        commands={RUN: Command(RunTask, run_task)},
        on_give_up=give_up_task,
        concurrency=lambda settings: settings.worker.task_concurrency,
        periodic=[
            Periodic(
                name="wake-waiting-tasks",
                interval=lambda settings: settings.worker.waiting_sweep_seconds,
                run=slots.sweep,
            )
        ],
    )


# --- requests from the API ---------------------------------------------------------------------


def _engine_job(job: Job) -> JobAdapter:
    adapter = ADAPTERS.get(job.resource_kind)
    if adapter is None:
        raise Conflict(
            f"{job.action} jobs cannot be cancelled or retried", code="job_not_controllable"
        )
    return adapter


async def cancel_job(session: AsyncSession, job_id: str, access: Access) -> Job:
    """Ask a running job to stop: pending tasks are cancelled, a running task finishes first."""
    job = await jobs.get_visible_job(session, job_id, access)
    _engine_job(job)
    locked = await _lock_job(session, job_id)
    assert locked is not None
    job = locked
    if job.status in TERMINAL_STATUSES:
        raise Conflict(f"job {job_id!r} already ended ({job.status})", code="job_ended")
    if job.cancel_requested:
        return job  # asked already in this run: its advance is on its way, or done
    job.cancel_requested = True
    request_advance(session, job_id, msg_id=cancel_id(job_id, job.run))
    return job


async def retry_job(session: AsyncSession, job_id: str, access: Access) -> Job:
    """Run a failed or cancelled job again from its unfinished tasks (successful ones stay)."""
    job = await jobs.get_visible_job(session, job_id, access)
    adapter = _engine_job(job)
    # Two retries at once: the second waits here and finds the job pending.
    locked = await _lock_job(session, job_id)
    assert locked is not None
    job = locked
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise Conflict(
            f"only failed or cancelled jobs can be retried; this one is {job.status}",
            code="job_not_retryable",
        )
    if not await adapter.relock(session, job):
        raise Conflict(
            f"{job.resource_kind} {job.resource_id} is busy with another job",
            code=f"{job.resource_kind}_busy",
        )
    for task in await jobs.tasks_of(session, job_id):
        if task.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            task.status = JobStatus.PENDING
            task.slot = ""
            task.error_code = task.error_message = None
            task.end_time = None
    job.run += 1
    job.status = JobStatus.PENDING
    job.cancel_requested = False
    job.error_code = job.error_message = None
    job.end_time = None
    # The job's event stream tells runs apart by this count (jobs.stream).
    job.result = {"retries": job.run}
    jobs.announce(session, job, JobStatus.PENDING, f"retry {job.run} requested")
    request_advance(session, job_id, msg_id=retry_id(job_id, job.run))
    return job
