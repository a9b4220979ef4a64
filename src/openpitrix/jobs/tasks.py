"""The task runner: runs one task at a time through its job's resource adapter (which calls the
provider, fetches an index, ...), with heartbeats, a timeout and cancel polling, records the
outcome and advances the job in the same transaction (the next layer dispatched, or the job
ended), so a task's end needs no message to the job-manager.

`<manager>.run {job_id, task_id, dispatch}`: claim the task, run it, settle it. A run delivered
twice, or redelivered after a worker died, runs the task once. The task-manager runs cluster
tasks with it; the repo-indexer and the repo-manager register the same command for the tasks
the adapters route to them (`task_runner`, handed in by the composition root), each on its own
durable consumer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix.bus.topology import TASK_MANAGER
from openpitrix.db.engine import Database
from openpitrix.jobs import service as jobs
from openpitrix.jobs import slots
from openpitrix.jobs.adapter import ChainMemory, JobAdapter, JobAdapters, Reporter, TaskRunner
from openpitrix.jobs.commands import JobCommand, RunTask, dispatch_id, task_end_id
from openpitrix.jobs.manager import Chain, advance_locked, give_up_job, hand_over
from openpitrix.jobs.models import Job, Task
from openpitrix.jobs.plan import TaskError
from openpitrix.jobs.schemas import TERMINAL_STATUSES, ErrorInfo, JobStatus
from openpitrix.jobs.service import request_advance
from openpitrix.workers.service import (
    Command,
    Delivery,
    GiveUp,
    Manager,
    Periodic,
    RetryableError,
    WorkerContext,
)

log = logging.getLogger(__name__)

RUN = slots.RUN  # the verb of every manager that runs tasks
CANCEL_POLL_SECONDS = 1.0
# Tasks this process is running: a command redelivered to the process still running it (its
# heartbeats stalled past the ack wait) must not start the task a second time alongside.
_RUNNING: set[str] = set()


async def run_task(
    ctx: WorkerContext, delivery: Delivery, command: RunTask, *, adapters: JobAdapters
) -> None:
    job_id = command.job_id
    # The message's id: what a task this handler chains to records (`Task.runs_under`).
    # Commands from before dispatches were numbered (0) run their own task only.
    under = dispatch_id(command.task_id, command.dispatch) if command.dispatch else None
    async with ctx.db.transaction() as session:
        found = await jobs.job_and_task(session, job_id, command.task_id)
        if found is None:
            return
        job, task = found
        if job.status in TERMINAL_STATUSES:
            return
        if 0 < command.dispatch < task.dispatches:
            # A later dispatch (the task was cancelled before this one reached a worker, then
            # retried) supersedes this copy: the task runs from that one, once.
            log.info("task=%s dispatch %d superseded; ignored", task.task_id, command.dispatch)
            return
        chained = False
        if task.status in TERMINAL_STATUSES:
            # The command's own task ended. Redelivered, the message may have been held by a
            # chain whose worker died (or that asked for a retry) in a later task of the job:
            # that task is resumed here, under the same message.
            if under is None or delivery.num_delivered == 1:
                return
            running = await _running_under(session, job_id, under)
            if running is None:
                return
            task, chained = running, True
        task_id = task.task_id
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
                await slots.wake(ctx, session, target, adapters)
            return
        # A task already working was claimed by an earlier delivery. If this is that message
        # coming back (its worker died or timed out), resume; a second copy of a fresh
        # dispatch must not run the task twice at once.
        if task.status == JobStatus.WORKING and delivery.num_delivered == 1:
            return
        # A dispatched or resumed task holds its slot already; any other needs a free one.
        if task.status == JobStatus.PENDING and not await slots.may_start(ctx, session, job, task):
            return
        # The job's row before the task's, in the order an advance takes them (after the
        # target's lock): a cancelling advance ends pending tasks while it holds the job.
        locked = await jobs.lock_job(session, job_id, read=job)
        if locked is None or locked.status in TERMINAL_STATUSES:
            return
        job = locked
        # Left working by a worker that died (or was stopped) mid-task, not one retrying it.
        resumed = task.status == JobStatus.WORKING and task.executor is not None
        claimed = await jobs.claim_task(
            session,
            task,
            ctx.executor,
            slot=slots.claim_mark(task),
            runs_under=under if chained else None,
        )
        if not claimed:
            return
        if resumed:
            # Its worker died mid-task: the job is resumed here (a new attempt, an event).
            started = await jobs.start_job(session, job_id, ctx.executor)
            if started is None:
                return
            job = started
        else:
            job.executor = ctx.executor  # the job shows the worker running its current task
        jobs.task_started(session, job, task)
    await _run_chain(ctx, adapters, job, task, subject=delivery.subject, under=under)


async def _running_under(session: AsyncSession, job_id: str, under: str) -> Task | None:
    """The job's task that a chained run holding message `under` left working, if any."""
    for task in await jobs.tasks_of(session, job_id):
        if task.status == JobStatus.WORKING and task.runs_under == under:
            return task
    return None


async def _run_chain(
    ctx: WorkerContext,
    adapters: JobAdapters,
    job: Job,
    task: Task,
    *,
    subject: str,
    under: str | None,
) -> None:
    """Run the claimed task; then, as long as settling a task claims the job's next one for
    this runner (a chain: the next layer's task goes to the manager consuming `subject`), run
    that one too, in the same consumer slot and under the same message (`under`, which the
    consumer keeps in progress meanwhile). A chained task costs no message and no claim of
    its own, and a job, once started, runs to its end without queueing behind other jobs'
    tasks; should this worker die, the message comes back and resumes the task it was
    running (`run_task`)."""
    writer = _progress_writer(ctx.db)
    memory: ChainMemory = {}  # the adapter's, for the job's next task in this chain
    current: tuple[Job, Task] | None = (job, task)
    while current is not None:
        running_job, running_task = current

        async def report(
            message: str,
            progress: int | None,
            data: dict[str, Any],
            job: Job = running_job,
            task: Task = running_task,
        ) -> None:
            await writer.write(job, task, message, progress, data)

        chain = Chain(subject) if under is not None else None
        _RUNNING.add(running_task.task_id)
        try:
            current = await _run_claimed(
                ctx,
                adapters,
                adapters[running_job.resource_kind],
                running_job,
                running_task,
                report,
                memory,
                chain=chain,
                under=under,
            )
        finally:
            _RUNNING.discard(running_task.task_id)


async def _run_claimed(
    ctx: WorkerContext,
    adapters: JobAdapters,
    adapter: JobAdapter,
    job: Job,
    task: Task,
    report: Reporter,
    memory: ChainMemory,
    *,
    chain: Chain | None,
    under: str | None,
) -> tuple[Job, Task] | None:
    """Run one claimed task and settle it; the job's next task, when the settling claimed it
    for this runner (`chain`)."""
    job_id, task_id = job.job_id, task.task_id
    settle = partial(
        _settle, ctx, adapters, job_id, task_id, target=task.target, chain=chain, under=under
    )
    timeout = task.timeout_seconds or ctx.settings.worker.task_timeout_seconds
    try:
        # The consumer keeps the command ours with in_progress beats while this runs.
        result = await _until_cancelled(
            ctx,
            job_id,
            asyncio.wait_for(
                adapter.run_task(ctx, job, task, report, slots.giver(ctx, adapters, task), memory),
                timeout,
            ),
        )
    except _Cancelled:
        return await settle(JobStatus.CANCELLED)
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
                # No worker holds the task until the retry claims it: the retry is not a
                # worker that died (which leaves its executor set, and resumes the job). A
                # chained task keeps its message, which the retry comes back with.
                await s.execute(
                    update(Task)
                    .where(col(Task.task_id) == task_id, col(Task.status) == JobStatus.WORKING)
                    .values(executor=None)
                    .execution_options(synchronize_session=False)
                )
            raise RetryableError(exc.message, delay=delay) from None
        return await settle(JobStatus.FAILED, error=ErrorInfo(code=exc.code, message=exc.message))
    except TimeoutError:
        error = ErrorInfo(code="task_timeout", message=f"task exceeded {timeout:.0f} s")
        return await settle(JobStatus.FAILED, error=error)
    return await settle(JobStatus.SUCCESSFUL, result=result, adapter=adapter)


class _ProgressWriter:
    """Writes the progress events of the tasks running in this process, those reported
    while an earlier write is under way together in the next transaction (one commit and one
    outbox insert for all). A report returns once its event is committed, as if it had its
    own transaction, and fails if that transaction does."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: list[_Report] = []
        self._writing: asyncio.Task[None] | None = None

    async def write(
        self, job: Job, task: Task, message: str, progress: int | None, data: dict[str, Any]
    ) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._pending.append(_Report(job, task, message, progress, data, done))
        writing = self._writing
        if writing is None or writing.done() or writing.get_loop() is not loop:
            self._writing = asyncio.create_task(self._write_pending())
        await asyncio.shield(done)

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self._db.transaction() as session:
                    for r in batch:
                        jobs.report_progress(
                            session, r.job, r.task, r.message, progress=r.progress, data=r.data
                        )
            except Exception as exc:
                for r in batch:
                    if not r.done.done():
                        r.done.set_exception(exc)
            else:
                for r in batch:
                    if not r.done.done():
                        r.done.set_result(None)


@dataclass(frozen=True)
class _Report:
    job: Job
    task: Task
    message: str
    progress: int | None
    data: dict[str, Any]
    done: asyncio.Future[None]


_Shared = TypeVar("_Shared")


def _one_per_database(
    registry: WeakKeyDictionary[Database, _Shared], make: Callable[[Database], _Shared]
) -> Callable[[Database], _Shared]:
    """The process's one `make(db)` per database, made on first use."""

    def get(db: Database) -> _Shared:
        shared = registry.get(db)
        if shared is None:
            shared = registry[db] = make(db)
        return shared

    return get


_progress_writer = _one_per_database(WeakKeyDictionary(), _ProgressWriter)


# Which of the watched jobs were asked to cancel (one statement for every running task).
_CANCEL_REQUESTED = select(col(Job.job_id)).where(
    col(Job.job_id).in_(bindparam("job_ids", expanding=True)),
    col(Job.cancel_requested).is_(True),
)


class _Cancelled(Exception):
    """The job was asked to cancel while its task ran."""


class _CancelWatch:
    """Watches the jobs of the tasks this process runs for a cancel request: one read every
    CANCEL_POLL_SECONDS for all of them (before, each running task read its job's flag every
    second in a read transaction of its own). A read that fails (the database away) is tried
    again at the next poll; it cancels nothing."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._polling: asyncio.Task[None] | None = None

    async def requested(self, job_id: str) -> None:
        """Return once `job_id` is asked to cancel."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(job_id, []).append(waiter)
        polling = self._polling
        if polling is None or polling.done() or polling.get_loop() is not loop:
            self._polling = asyncio.create_task(self._poll())
        try:
            await waiter
        finally:
            waiters = self._waiters.get(job_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(job_id, None)

    async def _poll(self) -> None:
        while self._waiters:
            await asyncio.sleep(CANCEL_POLL_SECONDS)
            job_ids = list(self._waiters)
            if not job_ids:
                return
            try:
                async with self._db.read_session() as session:
                    found = await session.execute(_CANCEL_REQUESTED, {"job_ids": job_ids})
                    cancelled = list(found.scalars())
            except Exception:
                log.warning("could not read cancel requests; trying again", exc_info=True)
                continue
            for job_id in cancelled:
                for waiter in self._waiters.get(job_id, []):
                    if not waiter.done():
                        waiter.set_result(None)


_cancel_watch = _one_per_database(WeakKeyDictionary(), _CancelWatch)


async def _until_cancelled(
    ctx: WorkerContext, job_id: str, work: Awaitable[dict[str, Any]]
) -> dict[str, Any]:
    """Run the task, stopping it when its job is asked to cancel (checked every
    CANCEL_POLL_SECONDS), so a cancel does not wait for a long readiness wait to time out."""
    runner = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_cancel_watch(ctx.db).requested(job_id))
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


class _Unknown:
    """The target of a task not read yet."""


_UNKNOWN = _Unknown()


async def _settle(
    ctx: WorkerContext,
    adapters: JobAdapters,
    job_id: str,
    task_id: str,
    status: JobStatus,
    *,
    error: ErrorInfo | None = None,
    result: dict[str, Any] | None = None,
    adapter: JobAdapter | None = None,
    dispatch: int = 0,
    target: str | _Unknown | None = _UNKNOWN,
    chain: Chain | None = None,
    under: str | None = None,
) -> tuple[Job, Task] | None:
    """Record a task's outcome and advance its job, in one transaction: the task's end, the
    queued tasks its slot goes to, and the job's next step (the next layer dispatched, or the
    job ended) commit together, so a crash loses none and the job-manager gets no message. A
    task that already ended (a duplicate outcome), or an outcome of a superseded `dispatch`,
    is left alone, but for the task a chain left running under message `under` (a give-up of
    a message that chained). `target`: the task's, when the caller knows it (it never
    changes; a job's tasks share it). With `chain`, the job's next task for this runner is
    claimed here too, running under `under`, and returned with its job to be run next."""
    async with ctx.db.transaction() as session:
        if isinstance(target, _Unknown):
            target = await _target_of(session, task_id)
        if target is not None:
            # The target's lock before any row lock, in the order claims and advances take
            # them: a claim holding it may be waiting for this job's row.
            await slots.lock_target(session, target)
        job = await jobs.lock_job(session, job_id)
        if job is None:
            return None
        tasks = await jobs.tasks_of(session, job_id)
        task = next((t for t in tasks if t.task_id == task_id), None)
        if task is None or 0 < dispatch < task.dispatches:
            return None
        if task.status in TERMINAL_STATUSES and chain is None and under is not None:
            task = next(
                (t for t in tasks if t.status == JobStatus.WORKING and t.runs_under == under),
                None,
            )
        if task is None or task.status in TERMINAL_STATUSES:
            return None
        if result is not None and adapter is not None:
            # What the task produced is persisted by its adapter; the task shows a summary.
            result = await adapter.task_succeeded(session, job, task, result)
        jobs.finish_task(session, job, task, status, result=result, error=error)
        after = await _advance(ctx, session, adapters, job, tasks, task, status, chain, under)
        if target is not None:
            # The slot goes to the oldest task waiting for one: the job's own next task was
            # weighed against the queue (by age) as the job advanced; queued tasks get the
            # slots left, this one's among them if the job did not take it on.
            await session.flush()
            await slots.wake(ctx, session, target, adapters)
        return after


async def _advance(
    ctx: WorkerContext,
    session: AsyncSession,
    adapters: JobAdapters,
    job: Job,
    tasks: list[Task],
    task: Task,
    status: JobStatus,
    chain: Chain | None,
    under: str | None,
) -> tuple[Job, Task] | None:
    """The job's next step after `task` ended (in `_settle`'s transaction); with `chain`, the
    job's next task claimed for this runner, and its job."""
    if job.status in TERMINAL_STATUSES:
        return None
    if job.resource_kind not in adapters:
        # No engine here for the job: the job-manager decides (and ends it).
        request_advance(
            session, job.job_id, msg_id=task_end_id(task.task_id, task.dispatches, status)
        )
        return None
    await advance_locked(ctx, session, adapters, job, tasks, chain=chain)
    if chain is None or chain.task is None:
        return None
    after = chain.task
    if not await jobs.claim_task(
        session, after, ctx.executor, slot=slots.claim_mark(after), runs_under=under, dispatch=True
    ):
        # Not its status as read under the job's lock (never expected): send it.
        slots.take(after, held=after.target is not None and slots.cap(ctx) > 0)
        slots.send(session, after, chain.subject)
        return None
    job.executor = ctx.executor
    jobs.task_started(session, job, after)
    return job, after


async def _target_of(session: AsyncSession, task_id: str) -> str | None:
    found = await session.execute(select(col(Task.target)).where(col(Task.task_id) == task_id))
    return found.scalar()


async def give_up_task(
    ctx: WorkerContext, delivery: Delivery, code: str, message: str, *, adapters: JobAdapters
) -> None:
    """The task's command ran out of deliveries: the task fails and the job moves on. Any
    other job command of the manager (a job's first command in an older form) fails its job."""
    if isinstance(delivery.payload, RunTask):
        error = ErrorInfo(code=code, message=message)
        command = delivery.payload
        await _settle(
            ctx,
            adapters,
            command.job_id,
            command.task_id,
            JobStatus.FAILED,
            error=error,
            dispatch=command.dispatch,
            under=dispatch_id(command.task_id, command.dispatch) if command.dispatch else None,
        )
    elif isinstance(delivery.payload, JobCommand):
        await give_up_job(ctx, delivery, code, message, adapters=adapters)


def task_runner(adapters: JobAdapters) -> TaskRunner:
    """The `run` command and its give-up hook, for every manager that runs the tasks the
    adapters route to it (`JobAdapter.runner`)."""
    give_up: GiveUp = partial(give_up_task, adapters=adapters)
    return TaskRunner(
        commands={RUN: Command(RunTask, partial(run_task, adapters=adapters))},
        on_give_up=give_up,
        hand_over=Command(JobCommand, hand_over),
    )


def task_manager(adapters: JobAdapters) -> Manager:
    """The task-manager, running the tasks the adapters route to it (cluster tasks)."""
    runner = task_runner(adapters)
    return Manager(
        name=TASK_MANAGER,
        commands=runner.commands,
        on_give_up=runner.on_give_up,
        concurrency=lambda settings: settings.worker.task_concurrency,
        periodic=[
            Periodic(
                name="wake-waiting-tasks",
                interval=lambda settings: settings.worker.waiting_sweep_seconds,
                run=partial(slots.sweep, adapters=adapters),
            )
        ],
    )
