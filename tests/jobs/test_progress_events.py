"""Progress reports of tasks running side by side in one worker: each report returns only once
its event is committed (a worker dying right after loses none), whether or not it shared its
transaction with other tasks' reports, and a report whose transaction fails raises."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from pydantic_core import PydanticSerializationError
from sqlalchemy import select
from sqlmodel import col

from openpitrix.db.engine import Database
from openpitrix.jobs.models import Job, Task
from openpitrix.jobs.tasks import _ProgressWriter
from openpitrix.outbox.models import OutboxMessage


def _running(n: int) -> tuple[Job, Task]:
    job_id = f"j-{uuid.uuid4().hex[:10]}"
    job = Job(job_id=job_id, action="deploy", resource_kind="cluster", resource_id=f"cl-{n}")
    return job, Task(task_id=f"t-{uuid.uuid4().hex[:10]}", job_id=job_id, action="apply")


async def _committed_messages(db: Database, task_id: str) -> list[str]:
    async with db.read_session() as session:
        stmt = select(col(OutboxMessage.payload)).order_by(col(OutboxMessage.seq))
        rows = (await session.execute(stmt)).scalars().all()
    # Only this task's events: the database is shared with the worker's other tests, whose
    # rows may hold any payload.
    events = [orjson.loads(p) for p in rows if task_id.encode() in bytes(p)]
    return [e["message"] for e in events if e.get("task_id") == task_id]


async def test_each_report_returns_once_its_event_is_committed(db: Database) -> None:
    writer = _ProgressWriter(db)
    running = [_running(n) for n in range(12)]

    async def report_twice(job: Job, task: Task) -> list[list[str]]:
        seen = []
        for step in ("applied 1", "applied 2"):
            await writer.write(job, task, step, None, {"step": step})
            seen.append(await _committed_messages(db, task.task_id))
        return seen

    results = await asyncio.gather(*(report_twice(job, task) for job, task in running))
    for seen in results:
        assert seen == [["applied 1"], ["applied 1", "applied 2"]]


async def test_a_report_whose_transaction_fails_raises(db: Database) -> None:
    writer = _ProgressWriter(db)
    job, task = _running(0)
    # Not JSON-serialisable: the event cannot be written, so the report must not pass.
    with pytest.raises(PydanticSerializationError):
        await writer.write(job, task, "broken", None, {"bad": object()})
    assert await _committed_messages(db, task.task_id) == []
    await writer.write(job, task, "fine", None, {})
    assert await _committed_messages(db, task.task_id) == ["fine"]
