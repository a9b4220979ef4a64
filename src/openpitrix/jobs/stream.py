"""A job's event stream: replay, follow, and know when nothing more can come."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from sqlalchemy import select
from sqlmodel import col

from openpitrix.bus.topology import event_subject
from openpitrix.db.engine import Database
from openpitrix.db.keyed_reads import KeyedReads
from openpitrix.errors import NotFound
from openpitrix.events.broadcast import Broadcaster
from openpitrix.events.schemas import EventType
from openpitrix.events.sse import EventStream
from openpitrix.iam.access import Access
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


@dataclass(frozen=True, slots=True)
class StreamedJob:
    """What a job's stream needs of its row."""

    job_id: str
    owner: str
    owner_path: str
    resource_kind: str
    resource_id: str
    status: str
    result: dict[str, Any]


_STREAMED_JOB = select(
    col(Job.job_id),
    col(Job.owner),
    col(Job.owner_path),
    col(Job.resource_kind),
    col(Job.resource_id),
    col(Job.status),
    col(Job.result),
)


JobRows = KeyedReads[str]


def job_rows(stream_db: Database) -> JobRows:
    """A process's reads of the jobs whose streams open (one per gateway, built in its
    lifespan): on the streams' own connections, outside any session (with a burst of deploys
    on the loop, every round trip of a session, begin, select, rollback, waited for a turn of
    the loop, and a job's first event for all of them), and the streams that open together
    read their jobs in one statement."""
    return KeyedReads(stream_db.reads, _STREAMED_JOB, _STREAMED_JOB.selected_columns["job_id"])


async def visible_job(jobs: JobRows, job_id: str, access: Access) -> StreamedJob:
    """The job a caller opens the stream of, if the caller may see it (jobs belong to their
    resource's owner; 404 otherwise, as for `GET /v1/jobs/{job_id}`)."""
    row = await jobs.get(job_id)
    if row is None:
        raise NotFound("job", job_id)
    job = StreamedJob(**row)
    access.check_visible("job", job_id, job.owner, job.owner_path)
    return job


def job_event_stream(
    platform: StreamResources,
    broadcaster: Broadcaster,
    settings: Settings,
    job: StreamedJob,
    after_seq: int | None,
) -> EventStream:
    subject = event_subject(job.owner, job.resource_kind, job.resource_id, job.job_id)
    stream = settings.bus.events_stream
    run = _run_of(job.result)
    # The job row was read just before the stream opens: while it is not over, the stream's
    # first question (has it ended?) needs no second read. A job that ended in between is
    # caught by its terminal event, which the replay ends at.
    first_check = {"running": job.status not in TERMINAL_STATUSES}

    async def done(last_seq: int) -> bool:
        """The job ended, its last event is published, and the client has seen it."""
        if first_check.pop("running", False):
            return False
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
