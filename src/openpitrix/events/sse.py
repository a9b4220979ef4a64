"""Server-sent events from the events stream, with `Last-Event-ID` = JetStream sequence.

Live events come from the process's one `Broadcaster` (events.broadcast); JetStream is read
only to catch a client up: a resume after `Last-Event-ID`, or a job's history. The client
joins the broadcaster first (its live events are buffered), then replays with a short-lived
ordered consumer up to where the stream stood after joining, then drains the buffer, skipping
whatever sequence it has already sent: no gap and no duplicate at the seam.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from openpitrix.events.broadcast import Broadcaster, Listener, Visibility, format_sse

__all__ = [
    "MAX_SEQUENCE",
    "EventStream",
    "StreamCounter",
    "Visibility",
    "format_sse",
]

log = logging.getLogger(__name__)

# JetStream sequences are uint64, and a resume asks for the one after: the largest sequence a
# client may name leaves room for that, and fits a signed 64-bit integer everywhere.
MAX_SEQUENCE = 2**63 - 1

# How many events a replay reads one request each before it takes a consumer for the rest.
DIRECT_READS = 4
# How long a replay waits for its next message before asking the server whether any is left.
REPLAY_WAIT_SECONDS = 0.25
# How often an idle job stream asks `done` (a database read): a job's stream normally ends at
# its terminal event; this only ends the rare stream that will not see one.
DONE_CHECK_SECONDS = 5.0

# Asked while idle: has the stream nothing more to say after `last_seq`? (job streams only)
DoneCheck = Callable[[int], Awaitable[bool]]
# Whether the stream ends after this event (its JSON), e.g. a job's terminal status.
EndCheck = Callable[[dict[str, Any]], bool]


class StreamCounter:
    """Event streams open in this process, per caller and in all, against their caps.

    Each stream holds a buffer and a task until its client leaves (and a JetStream consumer
    while it catches up), so one caller (or a crowd) opening streams without end would exhaust
    the process."""

    def __init__(self, *, per_caller: int, per_process: int) -> None:
        self.per_caller = per_caller
        self.per_process = per_process
        self._open: Counter[str] = Counter()
        self._total = 0

    def acquire(self, caller: str) -> bool:
        """Count one more stream of `caller`; False (nothing counted) when a cap is reached."""
        if self._total >= self.per_process or self._open[caller] >= self.per_caller:
            return False
        self._open[caller] += 1
        self._total += 1
        return True

    def release(self, caller: str) -> None:
        self._open[caller] -= 1
        if self._open[caller] <= 0:
            del self._open[caller]
        self._total -= 1

    def open_streams(self, caller: str | None = None) -> int:
        return self._total if caller is None else self._open[caller]


class EventStream:
    """One client's SSE frames for `subject`: replay (after `after_seq`; None: from the
    beginning if `done` is set, i.e. a job replay, else only new events), then the live feed
    until the client leaves, the stream ends (`ends`, `done`), or the client falls behind
    (`on_cut_off`: its connection is dropped and it resumes with `Last-Event-ID`)."""

    def __init__(
        self,
        js: JetStreamContext,
        broadcaster: Broadcaster,
        *,
        stream: str,
        subject: str,
        after_seq: int | None,
        keepalive_seconds: float,
        done: DoneCheck | None = None,
        ends: EndCheck | None = None,
        visible: Visibility | None = None,
    ) -> None:
        self.js = js
        self.broadcaster = broadcaster
        self.stream = stream
        self.subject = subject
        self.after_seq = after_seq
        self.keepalive_seconds = keepalive_seconds
        self.done = done
        self.ends = ends
        self.visible = visible
        self.listener: Listener = broadcaster.listener(subject, visible=visible)

    def on_cut_off(self, callback: Callable[[], object]) -> None:
        """Call `callback` if the client falls behind and is dropped from the live feed (its
        connection is to be closed even while a write to it is blocked)."""
        self.listener.on_cut_off = callback

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[bytes]:
        last_seq = self.after_seq or 0
        if self.done is not None and await self.done(last_seq):
            return
        listener = self.listener
        self.broadcaster.join(listener)
        # Everything after this sequence reaches the listener live (see _replay).
        bound = self.broadcaster.last_seq if self.broadcaster.stream == self.stream else 0
        try:
            yield b"retry: 2000\n\n"
            if self.after_seq is not None:
                replay_from: int | None = self.after_seq + 1
            else:
                replay_from = 1 if self.done is not None else None
            if replay_from is not None:
                replay = self._replay(replay_from, bound)
                while True:
                    try:
                        seq, data = await anext(replay)
                    except StopAsyncIteration:
                        break
                    except (NatsError, TimeoutError) as e:
                        # The bus did not answer the catch-up in time: end the stream cleanly.
                        # The client reconnects (retry above) with the Last-Event-ID it holds
                        # and the catch-up starts again from there, so nothing is lost.
                        log.warning(
                            "event stream %s: catch-up from %s failed (%s); the client resumes",
                            self.subject,
                            last_seq + 1,
                            type(e).__name__,
                        )
                        return
                    if seq <= last_seq:
                        continue
                    last_seq = seq
                    event = _parse(data)
                    if self.visible is not None and (event is None or not self.visible(event)):
                        continue
                    yield format_sse(seq, str((event or {}).get("type") or "message"), data)
                    if self.ends is not None and event is not None and self.ends(event):
                        return
            loop = asyncio.get_running_loop()
            last_sent = last_done_check = loop.time()
            wait = self.keepalive_seconds
            if self.done is not None:
                wait = min(wait, DONE_CHECK_SECONDS)
            # A feed stream relies on the broadcaster's ticks for its keep-alives (when it
            # ticks at this stream's interval); a job stream also checks `done` on its own.
            ticks = self.broadcaster.tick_seconds
            if self.done is not None or ticks is None or ticks * 2 != self.keepalive_seconds:
                ticks = None
            while True:
                if listener.behind:
                    return  # fell behind: the client resumes with Last-Event-ID
                deliveries = listener.take()
                if deliveries:
                    # Everything taken goes out in one write: a burst costs one send per
                    # client, not one per event.
                    frames: list[bytes] = []
                    ended = False
                    for seq, frame, event in deliveries:
                        if seq <= last_seq:
                            continue  # already replayed
                        last_seq = seq
                        frames.append(frame)
                        if self.ends is not None and event is not None and self.ends(event):
                            ended = True
                            break
                    if frames:
                        last_sent = loop.time()
                        yield frames[0] if len(frames) == 1 else b"".join(frames)
                    if ended:
                        return
                    continue
                if listener.pending():
                    continue  # all it took was invisible to it; more came meanwhile
                if ticks is not None:
                    # Woken by an event or by the broadcaster's keep-alive tick.
                    await listener.wait()
                    if not listener.tick:
                        continue
                    listener.tick = False
                    silent_for = self.keepalive_seconds - ticks / 2
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await listener.wait()
                        listener.tick = False
                        continue
                    silent_for = self.keepalive_seconds
                now = loop.time()
                if now - last_sent >= silent_for:
                    last_sent = now
                    yield b": keep-alive\n\n"
                if self.done is not None and now - last_done_check >= DONE_CHECK_SECONDS:
                    last_done_check = now
                    if await self.done(last_seq):
                        return
        finally:
            self.broadcaster.leave(listener)

    async def _replay(self, start: int, bound: int) -> AsyncIterator[tuple[int, bytes]]:
        """The stream's events on the subject from `start` up to `bound`, where the stream
        stood once the listener had joined (later ones reach the listener live).

        `bound` is the last sequence the broadcaster had handed out when the listener joined:
        its consumer delivers the stream in order, so every later event reaches the listener.
        Before the broadcaster's first event (0) the stream itself is asked. A job that has
        just begun has one or two events: those are read one request each, and a longer
        history through a short-lived ordered consumer."""
        if bound <= 0:
            info = await self.js.stream_info(self.stream)
            bound = info.state.last_seq
        if bound < start:
            return
        for _ in range(DIRECT_READS):
            try:
                stored = await self.js.get_msg(
                    self.stream, seq=start, subject=self.subject, next=True
                )
            except NotFoundError:
                return  # nothing (more) on the subject
            seq = stored.seq or 0
            if seq > bound:
                return  # it reaches the listener live
            yield seq, stored.data or b""
            if seq >= bound:
                return
            start = seq + 1
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
        sub = await self.js.subscribe(
            self.subject, stream=self.stream, ordered_consumer=True, config=config
        )
        last_seen = start - 1
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=REPLAY_WAIT_SECONDS)
                except (NatsTimeoutError, TimeoutError):
                    consumer = await sub.consumer_info()
                    delivered = consumer.delivered.stream_seq if consumer.delivered else 0
                    if not consumer.num_pending and (delivered or 0) <= last_seen:
                        return  # nothing (more) matches
                    continue
                meta = msg.metadata
                seq = meta.sequence.stream
                if seq > bound:
                    return
                last_seen = seq
                yield seq, msg.data
                if seq >= bound or not meta.num_pending:
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None
