"""The event feed route and the SSE response helpers shared with job streams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Send
from starlette.types import Scope as Scope_

from openpitrix.api.deps import PlatformDep, SettingsDep
from openpitrix.api.errors import ERROR_RESPONSES, ErrorBody
from openpitrix.api.routing import DomainRouter
from openpitrix.bus.topology import events_filter
from openpitrix.errors import BadRequest, TooManyRequests
from openpitrix.events.broadcast import Broadcaster
from openpitrix.events.sse import (
    MAX_SEQUENCE,
    EventStream,
    StreamCounter,
    Visibility,
)
from openpitrix.iam.access import Caller, Scope
from openpitrix.iam.deps import AuthenticatedRoute, CanReadEvents, authenticate

router = DomainRouter(tags=["events"], responses=ERROR_RESPONSES, route_class=AuthenticatedRoute)

SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "text/event-stream: `id:` sequence, `event:` type, `data:` event JSON.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    429: {
        "model": ErrorBody,
        "description": "`too_many_streams`: you (or this server) hold the most event streams "
        "allowed at once; retry after `Retry-After` seconds or close one",
    },
}

# A resume point: `after` (query) or `Last-Event-ID` (header), at most MAX_SEQUENCE.
After = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_SEQUENCE,
        description="Resume after this sequence (for clients that cannot send Last-Event-ID).",
    ),
]

KINDS = r"^[a-z][a-z0-9-]{0,29}$"
IDS = r"^[a-z][a-z0-9-]{1,39}$"


def parse_last_event_id(header: str | None, after: int | None) -> int | None:
    if header is None or header.strip() == "":
        return after
    try:
        value = int(header.strip())
    except ValueError:
        raise _bad_last_event_id("must be an event sequence number") from None
    if value < 0:
        raise _bad_last_event_id("must not be negative")
    if value > MAX_SEQUENCE:
        raise _bad_last_event_id(f"must be at most {MAX_SEQUENCE}")
    return value


def _bad_last_event_id(why: str) -> BadRequest:
    return BadRequest(
        f"Last-Event-ID {why}",
        code="invalid_last_event_id",
        details={"parameter": "Last-Event-ID"},
    )


async def stream_slot(
    request: Request,
    caller: Annotated[Caller, Depends(authenticate)],
    settings: SettingsDep,
) -> AsyncIterator[None]:
    """Hold one of the caller's (and the process's) event streams while the answer streams;
    over a cap, 429 before the stream starts."""
    counter: StreamCounter = request.app.state.sse_streams
    if not counter.acquire(caller.user_id):
        raise TooManyRequests(
            "too many event streams are open; close one or retry later",
            code="too_many_streams",
            retry_after=settings.http.sse_retry_after_seconds,
        )
    try:
        yield
    finally:
        counter.release(caller.user_id)


# Ends (and gives the stream back) once the response has been sent, i.e. when the stream ends.
StreamSlot = Annotated[None, Depends(stream_slot)]


async def broadcaster_of(request: Request) -> Broadcaster:
    broadcaster: Broadcaster = request.app.state.broadcaster
    return broadcaster


# The process's one subscription to the events stream (events.broadcast).
BroadcasterDep = Annotated[Broadcaster, Depends(broadcaster_of)]


class SSEResponse(StreamingResponse):
    """A stream of SSE frames that is cut off (the connection closed) as soon as its client
    falls behind, even while a write to it is blocked on a client that does not read.

    One task writes the frames and one waits for the client to leave; an event wakes only the
    writer (StreamingResponse's own loop adds a task group around both)."""

    def __init__(self, frames: EventStream) -> None:
        super().__init__(
            frames,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.frames = frames

    async def _write(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        chunks = aiter(self.frames)
        try:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _until_disconnect(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def __call__(self, scope: Scope_, receive: Receive, send: Send) -> None:
        writing = asyncio.ensure_future(self._write(send))
        self.frames.on_cut_off(writing.cancel)
        leaving = asyncio.ensure_future(self._until_disconnect(receive))
        try:
            await asyncio.wait({writing, leaving}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            leaving.cancel()
            if not writing.done():
                writing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writing
        if not writing.cancelled():
            writing.result()


def sse_response(frames: EventStream) -> StreamingResponse:
    return SSEResponse(frames)


@router.get(
    "/v1/events",
    operation_id="stream_events",
    response_class=StreamingResponse,
    responses=SSE_RESPONSES,
)
async def stream_feed(
    access: CanReadEvents,
    _: StreamSlot,
    platform: PlatformDep,
    broadcaster: BroadcasterDep,
    settings: SettingsDep,
    resource_kind: Annotated[str | None, Query(pattern=KINDS)] = None,
    resource_id: Annotated[str | None, Query(pattern=IDS)] = None,
    last_event_id: Annotated[str | None, Header()] = None,
    after: After = None,
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
        EventStream(
            platform.js,
            broadcaster,
            stream=settings.bus.events_stream,
            subject=subject,
            after_seq=after_seq,
            keepalive_seconds=settings.sse_keepalive_seconds,
            visible=visible,
        )
    )
