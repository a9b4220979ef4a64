"""One bus subscription per process, fanned out in process to the local SSE clients.

The broadcaster holds a single ordered JetStream push consumer on the events stream
(DeliverPolicy NEW) and hands each event to every registered `Listener` whose subject filter
(and visibility rule) matches: one frame built per event, shared by every client.

Why a JetStream consumer and not a core NATS subscription on the stream's subjects: an SSE
`id:` is the event's stream sequence, which only a consumer's delivery carries (a core
subscription sees the publish, not where the stream stored it), and the catch-up seam is
decided by comparing sequences. An ordered consumer also re-creates itself at the next
sequence after a gap or a lost heartbeat, so the live feed itself has no gap.

Fan-out costs one step per event and one wake-up per waiting client, not one per (event,
client): the listeners of one subject filter share a log of the events that matched it, each
listener only a cursor into it. An event is appended once; the listeners parked at the end of
the log are woken once per COALESCE_SECONDS, so a burst (the relay publishes a wave at once,
which may reach this process in several reads) costs each client one wake-up and one write.

The log is bounded: a listener more than `limit` events behind (its client does not read) is
dropped and told so (`behind`, `on_cut_off`); its client is disconnected and resumes with
`Last-Event-ID`, replaying from the stream what it missed. Nobody waits for a slow client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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


# How long an event waits for the ones right behind it before the waiting clients are woken:
# one wake-up and one write per client for a burst instead of one per read from the bus.
COALESCE_SECONDS = 0.005


def format_sse(seq: int, event_type: str, data: bytes) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, event_type.encode(), data)


def _matches(pattern: tuple[str, ...], tokens: list[str]) -> bool:
    if len(pattern) != len(tokens):
        return False
    return all(p == "*" or p == t for p, t in zip(pattern, tokens, strict=True))


class Listener:
    """One client's place in the live feed: a subject filter (`*` wildcards, no `>`), an
    optional visibility rule, and a cursor into its filter's shared log."""

    def __init__(self, subject: str, *, limit: int, visible: Visibility | None = None) -> None:
        self.pattern = tuple(subject.split("."))
        self.visible = visible
        self.limit = limit
        self._group: _Group | None = None
        # Index (in the group's numbering) of the next delivery this listener takes.
        self.cursor = 0
        # Fell more than `limit` events behind: dropped, its client is to be disconnected.
        self.behind = False
        # Called once when it is dropped for falling behind (e.g. to cut off a blocked write).
        self.on_cut_off: Callable[[], object] | None = None
        # Set (and woken) by the broadcaster's keep-alive tick: time to check for silence.
        self.tick = False
        self._waiter: asyncio.Future[None] | None = None

    def take(self) -> list[Delivery]:
        """The deliveries after the cursor that this listener may see; the cursor moves to
        the end of the log."""
        group = self._group
        if group is None or self.behind:
            return []
        start = self.cursor - group.base
        log = group.log
        if start >= len(log):
            return []
        taken = log[start:] if start else log[:]
        self.cursor = group.base + len(log)
        visible = self.visible
        if visible is None:
            return taken
        return [d for d in taken if d[2] is not None and visible(d[2])]

    def pending(self) -> bool:
        group = self._group
        return group is not None and self.cursor < group.base + len(group.log)

    async def wait(self) -> None:
        """Until the next matching event, a keep-alive tick, or being dropped."""
        group = self._group
        if group is None or self.behind or self.pending():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        group.parked[self] = None
        try:
            await waiter
        finally:
            self._waiter = None
            if self._group is group:
                group.parked.pop(self, None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _cut_off(self) -> None:
        self.behind = True
        self._wake()
        if self.on_cut_off is not None:
            self.on_cut_off()


class _Group:
    """The listeners of one subject filter and the events that matched it since the oldest of
    them still to be taken (at most `limit`)."""

    __slots__ = ("base", "limit", "log", "members", "parked", "unwoken")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.log: list[Delivery] = []
        self.base = 0  # the number of log[0]
        self.members: set[Listener] = set()
        # Listeners waiting at the end of the log, in the order they parked.
        self.parked: dict[Listener, None] = {}
        # Deliveries appended since the parked listeners were last woken.
        self.unwoken = 0

    def append(self, delivery: Delivery) -> list[Listener]:
        """Add one delivery (`wake` wakes the parked listeners); the listeners now too far
        behind."""
        log = self.log
        if log and not self.unwoken and len(self.parked) == len(self.members):
            # Everyone has taken everything (a listener parks only at the end of the log, and
            # nothing came since the last wake): nothing in the log is needed any more.
            self.base += len(log)
            log.clear()
        log.append(delivery)
        self.unwoken += 1
        behind: list[Listener] = []
        if len(log) > self.limit:
            del log[0]
            self.base += 1
            base = self.base
            behind = [listener for listener in self.members if listener.cursor < base]
        return behind

    def wake(self) -> None:
        self.unwoken = 0
        parked = self.parked
        if parked:
            for listener in parked:
                listener._wake()
            parked.clear()


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
        self._by_filter: dict[tuple[str, ...], _Group] = {}
        # Groups with deliveries their parked listeners have not been woken for.
        self._unwoken: dict[_Group, None] = {}
        self._wake_scheduled: asyncio.TimerHandle | None = None
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
            # Only the parked ones: a listener with events to take is about to write anyway.
            for group in self._by_filter.values():
                for listener in group.parked:
                    listener.tick = True
                    listener._wake()
                group.parked.clear()

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
        if self._wake_scheduled is not None:
            self._wake_scheduled.cancel()
            self._wake_scheduled = None
        self._unwoken.clear()
        groups = list(self._by_filter.values())
        self._by_filter.clear()
        for group in groups:
            for listener in group.members:
                listener._group = None
                listener._cut_off()

    def listener(self, subject: str, *, visible: Visibility | None = None) -> Listener:
        """A listener with this process's buffer limit, not yet joined."""
        return Listener(subject, limit=self.buffer_limit, visible=visible)

    def join(self, listener: Listener) -> None:
        """From now on, every matching event the broadcaster receives is kept for the
        listener to take, until `leave`."""
        group = self._by_filter.get(listener.pattern)
        if group is None:
            group = self._by_filter[listener.pattern] = _Group(listener.limit)
        group.members.add(listener)
        listener._group = group
        listener.cursor = group.base + len(group.log)

    def leave(self, listener: Listener) -> None:
        group = self._by_filter.get(listener.pattern)
        if group is not None and listener._group is group:
            group.members.discard(listener)
            group.parked.pop(listener, None)
            if not group.members:
                del self._by_filter[listener.pattern]
        listener._group = None

    def listeners(self) -> int:
        return sum(len(group.members) for group in self._by_filter.values())

    async def _on_msg(self, msg: Msg) -> None:
        self.dispatch(msg.metadata.sequence.stream, msg.subject, msg.data)

    def _wake(self) -> None:
        self._wake_scheduled = None
        groups, self._unwoken = self._unwoken, {}
        for group in groups:
            group.wake()

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
        for pattern, group in self._by_filter.items():
            if _matches(pattern, tokens):
                dropped += group.append(delivery)
                if group.unwoken * 2 >= group.limit:
                    # Waiting longer would leave the parked listeners too far behind.
                    group.wake()
                    self._unwoken.pop(group, None)
                else:
                    self._unwoken[group] = None
        if self._unwoken and self._wake_scheduled is None:
            self._wake_scheduled = asyncio.get_running_loop().call_later(
                COALESCE_SECONDS, self._wake
            )
        for listener in dropped:
            log.info("event stream client fell behind (buffer full): disconnected")
            self.leave(listener)
            listener._cut_off()
