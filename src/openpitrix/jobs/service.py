"""Job and task state machines (guarded UPDATEs make a redelivered command harmless), and the
cancel and retry the API asks for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Select, String, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col

from openpitrix import ids
from openpitrix.bus.topology import JOB_MANAGER, command_subject
from openpitrix.db.listing import ListQuery, ListSpec, paginate, read_prepared_page
from openpitrix.db.locks import writers_serialized
from openpitrix.db.reads import Reads
from openpitrix.db.rows import add_row
from openpitrix.db.types import UTCDateTime, utcnow
from openpitrix.errors import Conflict, NotFound
from openpitrix.events.publisher import emit_event
from openpitrix.events.schemas import EventType
from openpitrix.iam.access import Access, Scope, scope_clause
from openpitrix.jobs.adapter import JobAdapter
from openpitrix.jobs.commands import ADVANCE, JobCommand, cancel_id, created_id, retry_id
from openpitrix.jobs.models import Job, Task
from openpitrix.jobs.schemas import TERMINAL_STATUSES, ErrorInfo, JobRead, JobStatus, TaskRead
from openpitrix.outbox.writer import enqueue

ACTIVE_STATUSES = (JobStatus.PENDING, JobStatus.WORKING)

JOB_LIST = ListSpec(
    sort_keys={
        "create_time": col(Job.create_time),
        "status_time": col(Job.status_time),
        "status": col(Job.status),
        "action": col(Job.action),
    },
    default_sort="create_time",
    id_columns=[col(Job.job_id), col(Job.resource_id)],
    text_columns=[col(Job.action), col(Job.error_message)],
)
TASK_LIST = ListSpec(
    sort_keys={"create_time": col(Task.create_time), "layer": col(Task.layer)},
    default_sort="create_time",
    id_columns=[col(Task.task_id), col(Task.job_id)],
    text_columns=[col(Task.action)],
)


@dataclass(frozen=True)
class TaskPlan:
    action: str
    layer: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    failure_allowed: bool = False


def add_job(
    session: AsyncSession,
    *,
    action: str,
    resource_kind: str,
    resource_id: str,
    owner: str,
    owner_path: str,
    manager: str,
    verb: str,
    params: dict[str, Any] | None = None,
    tasks: Sequence[TaskPlan] = (),
    job_id: str | None = None,
) -> Job:
    """Add a pending job (and its tasks), its first event and the command that runs it to the
    session: its next flush writes them."""
    job = Job(
        job_id=job_id or ids.new_id(ids.JOB),
        action=action,
        resource_kind=resource_kind,
        resource_id=resource_id,
        owner=owner,
        owner_path=owner_path,
        params=params or {},
    )
    session.add(job)
    for plan in tasks:
        session.add(
            Task(
                task_id=ids.new_id(ids.TASK),
                job_id=job.job_id,
                layer=plan.layer,
                action=plan.action,
                params=plan.params,
                failure_allowed=plan.failure_allowed,
            )
        )
    _created(session, job, manager, verb)
    return job


@dataclass(frozen=True, slots=True)
class NewJob:
    """A pending job to insert with `insert_job`: its row's columns besides the defaults."""

    job_id: str
    action: str
    resource_kind: str
    resource_id: str
    owner: str
    owner_path: str
    progress: int = 0


def insert_job(
    session: AsyncSession, job: NewJob, *, manager: str, verb: str, params: dict[str, Any]
) -> None:
    """`add_job` (without tasks) for a transaction that does not read the job back: its row
    goes in with the transaction's other jobs in one statement as it commits (`add_row`), as
    a group commit's batch of deploys does."""
    add_row(session, Job, **asdict(job), params=params)
    _created(session, job, manager, verb)


def _created(session: AsyncSession, job: Job | NewJob, manager: str, verb: str) -> None:
    # Clients see "pending" before any worker can report "working": the relay keeps a
    # resource's events in the order written (outbox.keys), and "working" is written only once
    # this transaction, and with it "pending", is committed.
    _job_event(session, job, JobStatus.PENDING, f"{job.action} job created")
    enqueue(
        session,
        command_subject(manager, verb),
        JobCommand(job_id=job.job_id).model_dump(),
        msg_id=created_id(job.job_id),
    )


def _job_event(
    session: AsyncSession,
    job: Job | NewJob,
    status: JobStatus,
    message: str,
    *,
    data: dict[str, Any] | None = None,
) -> None:
    emit_event(
        session,
        type=EventType.JOB_STATUS,
        owner=job.owner,
        owner_path=job.owner_path,
        resource_kind=job.resource_kind,
        resource_id=job.resource_id,
        job_id=job.job_id,
        status=status.value,
        message=message,
        progress=job.progress,
        data=data,
    )


def announce(session: AsyncSession, job: Job, status: JobStatus, message: str) -> None:
    """A job status event outside the usual transitions (a retry going back to pending)."""
    _job_event(session, job, status, message)


async def get_job(session: AsyncSession, job_id: str) -> Job:
    job = await session.get(Job, job_id)
    if job is None:
        raise NotFound("job", job_id)
    return job


async def start_job(session: AsyncSession, job_id: str, executor: str) -> Job | None:
    """Claim a pending job, or resume a working one whose worker died; None when already ended."""
    now = utcnow()
    result = await session.execute(
        update(Job)
        .where(col(Job.job_id) == job_id, col(Job.status).in_(ACTIVE_STATUSES))
        .values(
            status=JobStatus.WORKING,
            executor=executor,
            attempts=Job.attempts + 1,
            status_time=now,
            start_time=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        return None
    job = await session.get(Job, job_id, populate_existing=True)
    assert job is not None
    resumed = job.attempts > 1
    _job_event(
        session,
        job,
        JobStatus.WORKING,
        f"resumed by {executor} (attempt {job.attempts})" if resumed else f"started by {executor}",
        data={"executor": executor, "attempt": job.attempts},
    )
    return job


# The statements every task runs, built once (their bound values come with each execution):
# building one per call cost as much CPU as compiling and running it from the cache.
_JOB_AND_TASK = (
    select(Job, Task)
    .join(Task, col(Task.job_id) == col(Job.job_id))
    .where(col(Task.task_id) == bindparam("task_id"), col(Job.job_id) == bindparam("job_id"))
)
_NOW = bindparam("now", type_=UTCDateTime())
_CLAIM_TASK = (
    update(Task)
    .where(
        col(Task.task_id) == bindparam("claimed_task"),
        col(Task.status) == bindparam("read_status"),
        # A dispatched task whose slot an older job's task took (`slots.preempt`) is queued
        # again, not claimed.
        col(Task.slot) == bindparam("read_slot"),
    )
    .values(
        status=JobStatus.WORKING,
        slot=bindparam("new_slot"),
        executor=bindparam("new_executor"),
        runs_under=bindparam("new_runs_under"),
        attempts=Task.attempts + 1,
        start_time=func.coalesce(Task.start_time, _NOW),
        status_time=_NOW,
    )
    .returning(col(Task.attempts), col(Task.start_time), col(Task.dispatches))
    .execution_options(synchronize_session=False)
)
# The claim of a task its predecessor's runner takes on (a chained run): dispatched and claimed
# in one statement.
_CLAIM_CHAINED = _CLAIM_TASK.values(dispatches=Task.dispatches + 1)
_LOCK_JOB = (
    select(Job)
    .where(col(Job.job_id) == bindparam("job_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)
_TASKS_OF = (
    select(Task)
    .where(col(Task.job_id) == bindparam("job_id"))
    .order_by(col(Task.layer), col(Task.create_time))
)


async def job_and_task(session: AsyncSession, job_id: str, task_id: str) -> tuple[Job, Task] | None:
    """A task and its job, read in one statement."""
    row = (await session.execute(_JOB_AND_TASK, {"job_id": job_id, "task_id": task_id})).first()
    return (row[0], row[1]) if row is not None else None


async def claim_task(
    session: AsyncSession,
    task: Task,
    executor: str,
    *,
    slot: str,
    runs_under: str | None = None,
    dispatch: bool = False,
) -> bool:
    """Mark the task working for `executor` if its status and slot mark are still the ones
    read (False when another claim came first, or its slot was taken back). One guarded
    UPDATE: the values it set are the task's committed state, so nothing is written again on
    flush. `task_started` emits its event. `runs_under`:
    the command message a chained run holds (see `jobs.tasks`), None for the task's own;
    `dispatch`: count a dispatch too (a chained run's claim, which no message announced)."""
    now = utcnow()
    claimed = (
        await session.execute(
            _CLAIM_CHAINED if dispatch else _CLAIM_TASK,
            {
                "claimed_task": task.task_id,
                "read_status": task.status,
                "read_slot": task.slot,
                "new_slot": slot,
                "new_executor": executor,
                "new_runs_under": runs_under,
                "now": now,
            },
        )
    ).first()
    if claimed is None:
        return False
    for name, value in (
        ("status", JobStatus.WORKING.value),
        ("slot", slot),
        ("executor", executor),
        ("runs_under", runs_under),
        ("attempts", claimed[0]),
        ("start_time", claimed[1]),
        ("dispatches", claimed[2]),
        ("status_time", now),
    ):
        set_committed_value(task, name, value)
    return True


def task_started(session: AsyncSession, job: Job, task: Task) -> None:
    """The "started" event of a task `claim_task` claimed."""
    _task_event(
        session, job, task, EventType.TASK_STATUS, task.status, f"task {task.action} started"
    )


def _task_event(
    session: AsyncSession,
    job: Job,
    task: Task,
    type_: EventType,
    status: str | None,
    message: str,
    *,
    progress: int | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    emit_event(
        session,
        type=type_,
        owner=job.owner,
        owner_path=job.owner_path,
        resource_kind=job.resource_kind,
        resource_id=job.resource_id,
        job_id=job.job_id,
        task_id=task.task_id,
        status=status,
        message=message,
        progress=progress,
        data=data,
    )


def report_progress(
    session: AsyncSession,
    job: Job,
    task: Task,
    message: str,
    *,
    progress: int | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """A step of a task ("fetched index: 1.2 MB, 300 versions")."""
    if progress is not None:
        job.progress = progress
    _task_event(
        session,
        job,
        task,
        EventType.TASK_PROGRESS,
        task.status,
        message,
        progress=progress,
        data=data,
    )


async def keep_checkpoint(session: AsyncSession, task_id: str, data: dict[str, Any]) -> None:
    """Merge `data` into the task's checkpoint (its top-level keys replace the kept ones). The
    task's row is locked for it: two runs of one task (a stale worker, a resumed one) never
    lose each other's keys."""
    task = await session.get(Task, task_id, with_for_update=True, populate_existing=True)
    if task is not None:
        task.checkpoint = {**task.checkpoint, **data}


def finish_task(
    session: AsyncSession,
    job: Job,
    task: Task,
    status: JobStatus,
    *,
    result: dict[str, Any] | None = None,
    error: ErrorInfo | None = None,
) -> None:
    now = utcnow()
    task.status = status
    task.status_time = now
    task.end_time = now
    if result is not None:
        task.result = result
    if error is not None:
        task.error_code, task.error_message = error.code, error.message
    message = f"task {task.action} {status.value}" + (f": {error.message}" if error else "")
    _task_event(session, job, task, EventType.TASK_STATUS, status, message, data=result)


def finish_job(
    session: AsyncSession,
    job: Job,
    status: JobStatus,
    *,
    message: str,
    result: dict[str, Any] | None = None,
    error: ErrorInfo | None = None,
) -> None:
    """Move a job to a terminal status and emit its terminal event."""
    assert status in TERMINAL_STATUSES
    now = utcnow()
    job.status = status
    job.status_time = now
    job.end_time = now
    if status == JobStatus.SUCCESSFUL:
        job.progress = 100
    if result is not None:
        job.result = result
    if error is not None:
        job.error_code, job.error_message = error.code, error.message
    data: dict[str, Any] = {"result": job.result}
    if error is not None:
        data["error"] = error.model_dump()
    _job_event(session, job, status, message, data=data)


async def tasks_of(session: AsyncSession, job_id: str) -> list[Task]:
    rows = await session.execute(_TASKS_OF, {"job_id": job_id})
    return list(rows.scalars().all())


def task_read(task: Task) -> TaskRead:
    error = (
        ErrorInfo(code=task.error_code, message=task.error_message or "")
        if task.error_code
        else None
    )
    return TaskRead.model_validate({**task.model_dump(), "error": error})


def job_read(job: Job, tasks: Sequence[Task] = ()) -> JobRead:
    error = (
        ErrorInfo(code=job.error_code, message=job.error_message or "") if job.error_code else None
    )
    return JobRead.model_validate(
        {**job.model_dump(), "error": error, "tasks": [task_read(t) for t in tasks]}
    )


async def get_visible_job(session: AsyncSession, job_id: str, access: Access) -> Job:
    """A job the caller may see: jobs belong to their resource's owner."""
    job = await get_job(session, job_id)
    access.check_visible("job", job_id, job.owner, job.owner_path)
    return job


async def read_job(session: AsyncSession, job_id: str, access: Access) -> JobRead:
    job = await get_visible_job(session, job_id, access)
    return job_read(job, await tasks_of(session, job_id))


_JOB_FILTERS = ("status", "action", "resource_kind", "resource_id", "executor")
_JOB_FILTER_COLUMNS = (Job.status, Job.action, Job.resource_kind, Job.resource_id, Job.executor)


async def list_jobs(
    reads: Reads,
    query: ListQuery,
    access: Access,
    *,
    status: Sequence[str] = (),
    action: Sequence[str] = (),
    resource_kind: Sequence[str] = (),
    resource_id: Sequence[str] = (),
    executor: Sequence[str] = (),
) -> tuple[int, list[dict[str, Any]]]:
    """A page of JobRead bodies (see `_listed_job`), for api.responses.page_response.

    The statement is prepared once per shape (db.reads.prepare): the caller's scope and how
    many values each filter has; the caller's scope values and the filters' are bound."""
    filters = (status, action, resource_kind, resource_id, executor)
    shape = ("jobs", access.scope, *(len(given) for given in filters))
    values: dict[str, object] = access.clause_params()
    for label, given in zip(_JOB_FILTERS, filters, strict=True):
        for i, value in enumerate(given):
            values[f"{label}_{i}"] = str(value)  # plain str: a StrEnum is not every driver's str

    def build() -> Select[Any]:
        # Columns, not ORM objects: hydrating and dumping each Job cost more than the SQL.
        stmt = select(*_JOB_LIST_COLUMNS).where(
            scope_clause(access.scope, col(Job.owner), col(Job.owner_path))
        )
        for column, label, given in zip(_JOB_FILTER_COLUMNS, _JOB_FILTERS, filters, strict=True):
            if given:
                bound = [bindparam(f"{label}_{i}", type_=String) for i in range(len(given))]
                stmt = stmt.where(col(column).in_(bound))
        return stmt

    _, (total, rows) = await read_prepared_page(reads, shape, build, values, JOB_LIST, query)
    return total, [_listed_job(row) for row in rows]


# What JobRead shows of a job row (its error from two columns; a list carries no tasks).
_JOB_LIST_COLUMNS = [
    Job.__table__.c[name]  # type: ignore[attr-defined]
    for name in (*(f for f in JobRead.model_fields if f not in ("error", "tasks")), "error_code")
] + [col(Job.error_message)]


# JobRead's fields in its order: each a list row's column, but "error" (made from two
# columns) and "tasks" (a list carries none).
_JOB_BODY_FIELDS = tuple(JobRead.model_fields)


def _listed_job(row: Mapping[str, Any]) -> dict[str, Any]:
    """What `job_read` shows of a job, from a list row, as the dict of JobRead's fields in its
    order that api.responses.page_response writes (the very bytes JobRead would write;
    tests/jobs/test_list_bodies.py holds it to that)."""
    code = row["error_code"]
    made: dict[str, Any] = {
        "error": {"code": code, "message": row["error_message"] or ""} if code else None,
        "tasks": [],
    }
    return {name: made[name] if name in made else row[name] for name in _JOB_BODY_FIELDS}


async def list_tasks(
    session: AsyncSession,
    query: ListQuery,
    access: Access,
    *,
    job_id: Sequence[str] = (),
    status: Sequence[str] = (),
) -> tuple[int, list[TaskRead]]:
    stmt = select(Task)
    if access.scope != Scope.ALL:
        # Tasks carry no owner: they are visible through their job.
        stmt = stmt.join(Job, col(Job.job_id) == col(Task.job_id)).where(
            access.clause(col(Job.owner), col(Job.owner_path))
        )
    if job_id:
        stmt = stmt.where(col(Task.job_id).in_(job_id))
    if status:
        stmt = stmt.where(col(Task.status).in_(status))
    total, rows = await paginate(session, stmt, TASK_LIST, query)
    return total, [task_read(t) for t in rows]


# --- the job engine's shared steps, and the cancel and retry the API asks for -----------------


def request_advance(session: AsyncSession, job_id: str, *, msg_id: str) -> None:
    """Ask the job-manager to look at the job again (in the caller's transaction). `msg_id`
    names the cause (`jobs.commands`): a redelivered cause does not multiply advances."""
    enqueue(
        session,
        command_subject(JOB_MANAGER, ADVANCE),
        JobCommand(job_id=job_id).model_dump(),
        msg_id=msg_id,
    )


async def lock_job(session: AsyncSession, job_id: str, *, read: Job | None = None) -> Job | None:
    """The job's row, locked until the transaction ends, as it is now. FOR UPDATE on
    PostgreSQL: two advances of one job (two replicas) queue here. SQLite's writers are
    serialized already: `read`, the job as this write transaction read it, is the job now."""
    if read is not None and writers_serialized(session):
        return read
    result = await session.execute(_LOCK_JOB, {"job_id": job_id})
    return result.scalar_one_or_none()


def _engine_job(adapters: Mapping[str, JobAdapter], job: Job) -> JobAdapter:
    adapter = adapters.get(job.resource_kind)
    if adapter is None:
        raise Conflict(
            f"{job.action} jobs cannot be cancelled or retried", code="job_not_controllable"
        )
    return adapter


async def cancel_job(
    session: AsyncSession, job_id: str, access: Access, adapters: Mapping[str, JobAdapter]
) -> Job:
    """Ask a running job to stop: pending tasks are cancelled, a running task finishes first."""
    job = await get_visible_job(session, job_id, access)
    _engine_job(adapters, job)
    locked = await lock_job(session, job_id)
    assert locked is not None
    job = locked
    if job.status in TERMINAL_STATUSES:
        raise Conflict(f"job {job_id!r} already ended ({job.status})", code="job_ended")
    if job.cancel_requested:
        return job  # asked already in this run: its advance is on its way, or done
    job.cancel_requested = True
    request_advance(session, job_id, msg_id=cancel_id(job_id, job.run))
    return job


async def retry_job(
    session: AsyncSession, job_id: str, access: Access, adapters: Mapping[str, JobAdapter]
) -> Job:
    """Run a failed or cancelled job again from its unfinished tasks (successful ones stay)."""
    job = await get_visible_job(session, job_id, access)
    adapter = _engine_job(adapters, job)
    # Two retries at once: the second waits here and finds the job pending.
    locked = await lock_job(session, job_id)
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
    for task in await tasks_of(session, job_id):
        if task.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            task.status = JobStatus.PENDING
            task.slot = ""
            task.runs_under = None
            task.error_code = task.error_message = None
            task.end_time = None
    job.run += 1
    job.status = JobStatus.PENDING
    job.cancel_requested = False
    job.error_code = job.error_message = None
    job.end_time = None
    # The job's event stream tells runs apart by this count (jobs.stream).
    job.result = {"retries": job.run}
    announce(session, job, JobStatus.PENDING, f"retry {job.run} requested")
    request_advance(session, job_id, msg_id=retry_id(job_id, job.run))
    return job
