"""A stream's catch-up (events.sse.EventStream) gives exactly the subject's events after the
client's last one, in order, whatever else the stream holds between them. On a real
JetStream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats
import orjson
import pytest
from nats.js import JetStreamContext

from openpitrix.events.broadcast import Broadcaster
from openpitrix.events.sse import EventStream


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


async def _history(js: JetStreamContext, events: int) -> tuple[str, str, list[int]]:
    """A stream of its own holding `events` events of one job, each followed by an event of
    another job; returns the stream, the job's subject and its events' sequences."""
    name = f"REPLAY_{uuid.uuid4().hex[:10].upper()}"
    prefix = f"rp{uuid.uuid4().hex[:8]}"
    await js.add_stream(name=name, subjects=[f"{prefix}.>"])
    mine, theirs = f"{prefix}.job.j-mine", f"{prefix}.job.j-theirs"
    seqs = []
    for n in range(events):
        body = {"type": "job.status", "n": n, "end": n == events - 1}
        seqs.append((await js.publish(mine, orjson.dumps(body))).seq)
        await js.publish(theirs, orjson.dumps({"type": "job.status", "n": n}))
    return name, mine, seqs


async def _replayed(js: JetStreamContext, stream: str, subject: str, after: int) -> list[int]:
    broadcaster = Broadcaster(js, stream=stream, subject=subject, buffer_limit=100)
    frames = EventStream(
        js,
        broadcaster,
        stream=stream,
        subject=subject,
        after_seq=after,
        keepalive_seconds=15,
        ends=lambda event: bool(event.get("end")),
    )
    ids = []
    async for frame in frames:
        if frame.startswith(b"id: "):
            ids.append(int(frame.split(b"\n", 1)[0][4:]))
    return ids


@pytest.mark.parametrize("events", [1, 3, 24])
async def test_a_catch_up_gives_the_subjects_events_after_the_last_one_in_order(
    js: JetStreamContext, events: int
) -> None:
    stream, subject, seqs = await _history(js, events)
    try:
        assert await _replayed(js, stream, subject, after=0) == seqs
        # Resumed after its second event (Last-Event-ID), from the third on.
        if events > 2:
            assert await _replayed(js, stream, subject, after=seqs[1]) == seqs[2:]
        # Resumed between two of its events (after another job's event).
        if events > 1:
            assert await _replayed(js, stream, subject, after=seqs[0] + 1) == seqs[1:]
    finally:
        await js.delete_stream(stream)


async def test_a_catch_up_reads_the_stream_up_to_what_the_broadcaster_has_handed_out(
    js: JetStreamContext,
) -> None:
    """With a running broadcaster, the catch-up ends at the last event the broadcaster had
    handed out when the client joined: the later ones are the live feed's (here marked as
    such), none is missed or sent twice at the seam."""
    stream, subject, seqs = await _history(js, 6)
    try:
        broadcaster = Broadcaster(js, stream=stream, subject=subject, buffer_limit=100)
        for n, seq in enumerate(seqs[:3]):
            broadcaster.dispatch(seq, subject, orjson.dumps({"type": "job.status", "n": n}))
        frames = EventStream(
            js,
            broadcaster,
            stream=stream,
            subject=subject,
            after_seq=None,
            keepalive_seconds=15,
            done=_never_done,
            ends=lambda event: bool(event.get("end")),
        )
        received: list[tuple[int, dict[str, object]]] = []
        replayed = asyncio.Event()

        async def read() -> None:
            async for chunk in frames:  # live deliveries may share one write
                for frame in chunk.split(b"\n\n"):
                    if frame.startswith(b"id: "):
                        head, _, rest = frame.partition(b"\ndata: ")
                        received.append((int(head.split(b"\n", 1)[0][4:]), orjson.loads(rest)))
                        if len(received) == 3:
                            replayed.set()

        reader = asyncio.create_task(read())
        await asyncio.wait_for(replayed.wait(), 10)
        for n, seq in enumerate(seqs[3:], start=3):
            live = {"type": "job.status", "n": n, "live": True, "end": n == 5}
            broadcaster.dispatch(seq, subject, orjson.dumps(live))
        await asyncio.wait_for(reader, 10)
        assert [seq for seq, _ in received] == seqs
        assert [bool(event.get("live")) for _, event in received] == [False] * 3 + [True] * 3
    finally:
        await js.delete_stream(stream)


async def _never_done(last_seq: int) -> bool:
    return False
