"""One bus subscription per process, fanned out in process to the local SSE clients.

The broadcaster holds a single ordered JetStream push consumer on the events stream
(DeliverPolicy NEW) and hands each event to every registered `Listener` whose subject filter
(and visibility rule) matches: one frame built per event, shared by every client.

Why a JetStream consumer and not a core NATS subscription on the stream's subjects: an SSE
`id:` is the event's stream sequence, which only a consumer's delivery carries (a core
subscription sees the publish, not where the stream stored it), and the catch-up seam is
decided by comparing sequences. An ordered consumer also re-creates itself at the next
sequence after a gap or a lost heartbeat, so the live feed itself has no gap.

A listener's buffer is bounded: when it is full the listener is dropped and told so
(`overflowed`); its client is disconnected and resumes with `Last-Event-ID`, replaying from
the stream what it missed. Nobody waits for a slow client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

log = logging.getLogger(__name__)

# Whether the client may receive this event (its JSON); for filters a subject cannot express.
Visibility = Callable[[dict[str, Any]], bool]

# One delivered event: its stream sequence, its SSE frame and its JSON (None: not an object).
Delivery = tuple[int, bytes, dict[str, Any] | None]


def format_sse(seq: int, event_type: str, data: bytes) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, event_type.encode(), data)


def _matches(pattern: tuple[str, ...], tokens: list[str]) -> bool:
    if len(pattern) != len(tokens):
        return False
    return all(p == "*" or p == t for p, t in zip(pattern, tokens, strict=True))


class Listener:
    """One client's place in the live feed: a subject filter (`*` wildcards, no `>`), an
    optional visibility rule, and a bounded buffer of deliveries."""

    def __init__(self, subject: str, *, limit: int, visible: Visibility | None = None) -> None:
        self.pattern = tuple(subject.split("."))
        self.visible = visible
        self.limit = limit
        self.buffer: deque[Delivery] = deque()
        self.wake = asyncio.Event()
        self.overflowed = asyncio.Event()
        # Set (and woken) by the broadcaster's keep-alive tick: time to check for silence.
        self.tick = False

    def push(self, delivery: Delivery) -> bool:
        """Buffer one delivery; False when the buffer is full (the caller drops the listener)."""
        if len(self.buffer) >= self.limit:
            self.overflowed.set()
            self.wake.set()
            return False
        self.buffer.append(delivery)
        self.wake.set()
        return True


class Broadcaster:
    """The process's one subscription to the events stream and its local listeners."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        stream: str,
        subject: str,
        buffer_limit: int,
        keepalive_seconds: float | None = None,
    ) -> None:
        self.js = js
        # One timer for every idle client instead of one per client: each tick (twice per
        # keep-alive interval) wakes the listeners, which send a keep-alive if silent.
        self.tick_seconds = keepalive_seconds / 2 if keepalive_seconds else None
        self._ticker: asyncio.Task[None] | None = None
        self.stream = stream
        self.subject = subject
        self.buffer_limit = buffer_limit
        # Listeners grouped by subject filter: an event is matched once per distinct filter.
        self._by_filter: dict[tuple[str, ...], set[Listener]] = {}
        self._sub: JetStreamContext.PushSubscription | None = None
        self.last_seq = 0

    async def start(self) -> None:
        self._sub = await self.js.subscribe(
            self.subject,
            stream=self.stream,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
            idle_heartbeat=5.0,
            cb=self._on_msg,
            # A burst is handed to the listeners as it comes; nothing waits on a client.
            pending_msgs_limit=1_000_000,
        )
        if self.tick_seconds is not None:
            self._ticker = asyncio.create_task(self._tick(self.tick_seconds), name="sse-ticks")

    async def _tick(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            for listeners in self._by_filter.values():
                for listener in listeners:
                    listener.tick = True
                    listener.wake.set()

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        for listeners in self._by_filter.values():
            for listener in listeners:
                listener.overflowed.set()
                listener.wake.set()
        self._by_filter.clear()

    def listener(self, subject: str, *, visible: Visibility | None = None) -> Listener:
        """A listener with this process's buffer limit, not yet joined."""
        return Listener(subject, limit=self.buffer_limit, visible=visible)

    def join(self, listener: Listener) -> None:
        """From now on, every matching event the broadcaster receives is buffered for the
        listener, until `leave`."""
        self._by_filter.setdefault(listener.pattern, set()).add(listener)

    def leave(self, listener: Listener) -> None:
        listeners = self._by_filter.get(listener.pattern)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._by_filter[listener.pattern]

    def listeners(self) -> int:
        return sum(len(listeners) for listeners in self._by_filter.values())

    async def _on_msg(self, msg: Msg) -> None:
        self.dispatch(msg.metadata.sequence.stream, msg.subject, msg.data)

    def dispatch(self, seq: int, subject: str, data: bytes) -> None:
        if seq <= self.last_seq:
            return
        self.last_seq = seq
        tokens = subject.split(".")
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            parsed = None
        event = parsed if isinstance(parsed, dict) else None
        frame = format_sse(seq, str((event or {}).get("type") or "message"), data)
        delivery: Delivery = (seq, frame, event)
        dropped: list[Listener] = []
        for pattern, listeners in self._by_filter.items():
            if not _matches(pattern, tokens):
                continue
            for listener in listeners:
                if listener.visible is not None and (event is None or not listener.visible(event)):
                    continue
                if not listener.push(delivery):
                    dropped.append(listener)
        for listener in dropped:
            log.info("event stream client fell behind (buffer full): disconnected")
            self.leave(listener)
