"""A catch-up the bus cannot answer ends the event stream cleanly (the client reconnects with
its Last-Event-ID and catches up again) instead of failing the response mid-stream."""

from __future__ import annotations

import logging

import nats
import pytest

from openpitrix.events.broadcast import Broadcaster
from openpitrix.events.sse import EventStream


async def test_a_catch_up_the_bus_cannot_answer_ends_the_stream_with_a_warning(
    nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        # The stream the catch-up reads from does not exist: stream_info fails as a bus error.
        broadcaster = Broadcaster(js, stream="NO_SUCH_STREAM", subject="ev.>", buffer_limit=10)
        frames = EventStream(
            js,
            broadcaster,
            stream="NO_SUCH_STREAM",
            subject="ev.job.j-1",
            after_seq=41,
            keepalive_seconds=15,
        )
        with caplog.at_level(logging.WARNING, logger="openpitrix.events.sse"):
            got = [frame async for frame in frames]
    finally:
        await nc.close()
    assert got == [b"retry: 2000\n\n"]
    assert "catch-up from 42 failed" in caplog.text
