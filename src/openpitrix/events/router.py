"""The event feed route and the SSE response helpers shared with job streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from openpitrix.api.deps import PlatformDep, SettingsDep
from openpitrix.api.errors import ERROR_RESPONSES, ErrorBody
from openpitrix.bus.topology import events_filter
from openpitrix.errors import BadRequest
from openpitrix.events.sse import Visibility, stream_events
from openpitrix.iam.access import Scope
from openpitrix.iam.deps import CanReadEvents

router = APIRouter(tags=["events"], responses=ERROR_RESPONSES)

SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "text/event-stream: `id:` sequence, `event:` type, `data:` event JSON.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    429: {"model": ErrorBody, "description": "Too many open streams; retry later"},
}

KINDS = r"^[a-z][a-z0-9-]{0,29}$"
IDS = r"^[a-z][a-z0-9-]{1,39}$"


def parse_last_event_id(header: str | None, after: int | None) -> int | None:
    if header is None or header.strip() == "":
        return after
    try:
        value = int(header.strip())
    except ValueError:
        raise BadRequest(
            "Last-Event-ID must be an event sequence number", code="invalid_last_event_id"
        ) from None
    if value < 0:
        raise BadRequest("Last-Event-ID must not be negative", code="invalid_last_event_id")
    return value


def sse_response(frames: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        frames,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/v1/events",
    operation_id="stream_events",
    response_class=StreamingResponse,
    responses=SSE_RESPONSES,
)
async def stream_feed(
    access: CanReadEvents,
    platform: PlatformDep,
    settings: SettingsDep,
    resource_kind: Annotated[str | None, Query(pattern=KINDS)] = None,
    resource_id: Annotated[str | None, Query(pattern=IDS)] = None,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[int | None, Query(ge=0, description="Resume after this sequence.")] = None,
) -> StreamingResponse:
    """The events of resources you may see (by your role's scope; optionally of one resource)
    as server-sent events, live from now, or replayed from after `Last-Event-ID`. Sequence
    numbers have gaps where other tenants' events were."""
    after_seq = parse_last_event_id(last_event_id, after)
    visible: Visibility | None = None
    owner: str | None = None
    if access.scope == Scope.OWN:
        owner = access.owner  # the subject itself carries the owner: NATS does the filtering
    elif access.scope == Scope.GROUP:

        def visible(event: dict[str, Any]) -> bool:
            return access.covers(str(event.get("owner", "")), str(event.get("owner_path", "")))

    subject = events_filter(owner=owner, resource_kind=resource_kind, resource_id=resource_id)
    return sse_response(
        stream_events(
            platform.js,
            stream=settings.bus.events_stream,
            subject=subject,
            after_seq=after_seq,
            keepalive_seconds=settings.sse_keepalive_seconds,
            visible=visible,
        )
    )
