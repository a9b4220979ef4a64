"""A job's event stream: replay, follow, and know when nothing more can come."""

from __future__ import annotations

from typing import Any, Protocol

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from sqlalchemy import select
from sqlmodel import col

from openpitrix.bus.topology import event_subject
from openpitrix.db.engine import Database
from openpitrix.events.broadcast import Broadcaster
from openpitrix.events.schemas import EventType
from openpitrix.events.sse import EventStream
from openpitrix.jobs.models import Job
from openpitrix.jobs.schemas import TERMINAL_STATUSES
from openpitrix.outbox.relay import unsent_count
from openpitrix.settings import Settings


class StreamResources(Protocol):
    """What a job's stream reads: the database (through the streams' own pool, so that a
    client following its job does not wait behind other requests) and JetStream (the process
    platform has both)."""

    @property
    def stream_db(self) -> Database: ...

    @property
    def js(self) -> JetStreamContext: ...


def job_event_stream(
    platform: StreamResources,
    broadcaster: Broadcaster,
    settings: Settings,
    job: Job,
    after_seq: int | None,
) -> EventStream:
    subject = event_subject(job.owner, job.resource_kind, job.resource_id, job.job_id)
    stream = settings.bus.events_stream
    run = _run_of(job.result)

    async def done(last_seq: int) -> bool:
        """The job ended, its last event is published, and the client has seen it."""
        async with platform.stream_db.read_session() as session:
            status = (
                await session.execute(select(col(Job.status)).where(col(Job.job_id) == job.job_id))
            ).scalar_one()
            if status not in TERMINAL_STATUSES:
                return False
            unsent = await unsent_count(session, subject)
        if unsent:
            return False
        try:
            last = await platform.js.get_last_msg(stream, subject)
        except NotFoundError:
            return True
        return bool(last.seq is not None and last.seq <= last_seq)

    return EventStream(
        platform.js,
        broadcaster,
        stream=stream,
        subject=subject,
        after_seq=after_seq,
        keepalive_seconds=settings.sse_keepalive_seconds,
        done=done,
        ends=lambda event: _is_terminal(event) and _run_of(event.get("data")) == run,
    )


def _is_terminal(event: dict[str, Any]) -> bool:
    return bool(
        event.get("type") == EventType.JOB_STATUS and event.get("status") in TERMINAL_STATUSES
    )


def _run_of(data: Any) -> int:
    """Which run of a job an event's data (or the job's result) belongs to: 0, then one more
    per retry. A retried job's stream ends at its latest run's end, not the first's."""
    result = data.get("result", data) if isinstance(data, dict) else None
    retries = result.get("retries", 0) if isinstance(result, dict) else 0
    return retries if isinstance(retries, int) else 0
