"""Job and task routes, including a job's event stream."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from openpitrix.api.deps import (
    Filter,
    FilterField,
    ListDep,
    ListParams,
    PlatformDep,
    ReadsDep,
    ReadSessionDep,
    SessionDep,
    SettingsDep,
)
from openpitrix.api.errors import ERROR_RESPONSES
from openpitrix.api.params import QueryModel
from openpitrix.api.responses import page_response
from openpitrix.api.routing import DomainRouter
from openpitrix.feed.router import (
    SSE_RESPONSES,
    After,
    BroadcasterDep,
    StreamSlot,
    parse_last_event_id,
    sse_response,
)
from openpitrix.iam.deps import AuthenticatedRoute, CanReadJobs, CanWriteJobs
from openpitrix.jobs import service
from openpitrix.jobs.adapter import JobAdapters
from openpitrix.jobs.schemas import JobPage, JobRead, JobStatus, TaskPage
from openpitrix.jobs.stream import JobRows, job_event_stream, visible_job


async def job_adapters(request: Request) -> JobAdapters:
    """The adapters the composition root built (`gateway` puts them on the app's state)."""
    adapters: JobAdapters = request.app.state.job_adapters
    return adapters


AdaptersDep = Annotated[JobAdapters, Depends(job_adapters)]


async def job_rows_of(request: Request) -> JobRows:
    """The process's reads of streamed jobs (`gateway` builds them in its lifespan)."""
    rows: JobRows = request.app.state.job_rows
    return rows


JobRowsDep = Annotated[JobRows, Depends(job_rows_of)]

router = DomainRouter(tags=["jobs"], responses=ERROR_RESPONSES, route_class=AuthenticatedRoute)


class JobListParams(ListParams):
    status: list[JobStatus] | None = None
    action: FilterField = None
    resource_kind: FilterField = None
    resource_id: FilterField = None
    executor: FilterField = None


# A hot read (clients poll it): its query parameters are read as one model.
_JOB_LIST = QueryModel(JobListParams)


@router.get(
    "/v1/jobs",
    operation_id="list_jobs",
    response_model=JobPage,
)
async def list_jobs(
    access: CanReadJobs,
    reads: ReadsDep,
    params: Annotated[JobListParams, Depends(_JOB_LIST)],
) -> Response:
    """Jobs on resources you may see (by your role's scope)."""
    total, items = await service.list_jobs(
        reads,
        params.list_query(),
        access,
        **params.filters(),
    )
    return page_response(total, items)


@router.get("/v1/jobs/{job_id}", operation_id="get_job")
async def get_job(job_id: str, access: CanReadJobs, session: ReadSessionDep) -> JobRead:
    """A job with its tasks."""
    return await service.read_job(session, job_id, access)


@router.get("/v1/tasks", operation_id="list_tasks")
async def list_tasks(
    access: CanReadJobs,
    session: ReadSessionDep,
    query: ListDep,
    job_id: Filter = None,
    status: Annotated[list[JobStatus] | None, Query()] = None,
) -> TaskPage:
    """Tasks of jobs you may see."""
    total, items = await service.list_tasks(
        session, query, access, job_id=job_id or (), status=status or ()
    )
    return TaskPage(total_count=total, items=items)


@router.get(
    "/v1/jobs/{job_id}/events",
    operation_id="stream_job_events",
    response_class=StreamingResponse,
    responses=SSE_RESPONSES,
)
async def stream_job_events(
    job_id: str,
    access: CanReadJobs,
    _: StreamSlot,
    platform: PlatformDep,
    broadcaster: BroadcasterDep,
    settings: SettingsDep,
    jobs: JobRowsDep,
    last_event_id: Annotated[str | None, Header()] = None,
    after: After = None,
) -> StreamingResponse:
    """The job's events as server-sent events: replay from the start (or after `Last-Event-ID`),
    follow live, end after the terminal `job.status` event."""
    # On the streams' own connections: a burst of POSTs holding every pooled connection must
    # not delay the stream a client opens right after its own POST.
    job = await visible_job(jobs, job_id, access)
    after_seq = parse_last_event_id(last_event_id, after)
    return sse_response(job_event_stream(platform, broadcaster, settings, job, after_seq))


@router.post("/v1/jobs/{job_id}/actions/cancel", status_code=202, operation_id="cancel_job")
async def cancel_job(
    job_id: str, access: CanWriteJobs, session: SessionDep, adapters: AdaptersDep
) -> JobRead:
    """Stop a running cluster or repo job: pending tasks are cancelled; a running task stops
    (within about a second: a repo index's fetch is abandoned), then the job ends as
    `cancelled` and its resource's lock is released (a repo may be indexed again at once)."""
    job = await service.cancel_job(session, job_id, access, adapters)
    return service.job_read(job)


@router.post("/v1/jobs/{job_id}/actions/retry", status_code=202, operation_id="retry_job")
async def retry_job(
    job_id: str, access: CanWriteJobs, session: SessionDep, adapters: AdaptersDep
) -> JobRead:
    """Run a failed or cancelled cluster or repo job again, resuming from the task that failed
    (tasks that succeeded are not run again). 409 `<kind>_busy` when another job holds the
    resource now (a repo's newer index job)."""
    job = await service.retry_job(session, job_id, access, adapters)
    return service.job_read(job)
