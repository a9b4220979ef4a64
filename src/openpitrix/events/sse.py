"""Server-sent events from the events stream, with `Last-Event-ID` = JetStream sequence.

An ordered consumer on a subject filter replays from the requested sequence and then follows
live, so a resumed stream has neither gaps nor duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

log = logging.getLogger(__name__)

# JetStream sequences are uint64, and a resume asks for the one after: the largest sequence a
# client may name leaves room for that, and fits a signed 64-bit integer everywhere.
MAX_SEQUENCE = 2**63 - 1

IDLE_CHECK_SECONDS = 1.0
# How often an idle job stream asks `done` (a database read): a job's stream normally ends at
# its terminal event; this only ends the rare stream that will not see one.
DONE_CHECK_SECONDS = 5.0

# Asked while idle: has the stream nothing more to say after `last_seq`? (job streams only)
DoneCheck = Callable[[int], Awaitable[bool]]
# Whether the client may receive this event (its JSON); for filters a subject cannot express.
Visibility = Callable[[dict[str, Any]], bool]
# Whether the stream ends after this event (its JSON), e.g. a job's terminal status.
EndCheck = Callable[[dict[str, Any]], bool]


class StreamCounter:
    """Event streams open in this process, per caller and in all, against their caps.

    Each stream holds a JetStream consumer and a task until its client leaves, so one caller
    (or a crowd) opening streams without end would exhaust the process and the NATS server."""

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


def format_sse(seq: int, event_type: str, data: bytes) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, event_type.encode(), data)


async def stream_events(
    js: JetStreamContext,
    *,
    stream: str,
    subject: str,
    after_seq: int | None,
    keepalive_seconds: float,
    done: DoneCheck | None = None,
    ends: EndCheck | None = None,
    visible: Visibility | None = None,
) -> AsyncIterator[bytes]:
    """Yield SSE frames for `subject`, starting after `after_seq` (None: from the beginning if
    `done` is set, i.e. a job replay, else only new events)."""
    last_seq = after_seq or 0
    if done is not None and await done(last_seq):
        return
    if after_seq is not None:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after_seq + 1
        )
    elif done is not None:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    else:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
    sub = await js.subscribe(
        subject, stream=stream, ordered_consumer=True, config=config, idle_heartbeat=5.0
    )
    loop = asyncio.get_running_loop()
    last_sent = last_done_check = loop.time()
    try:
        yield b"retry: 2000\n\n"
        while True:
            try:
                msg = await sub.next_msg(timeout=IDLE_CHECK_SECONDS)
            except (NatsTimeoutError, TimeoutError):
                if loop.time() - last_sent >= keepalive_seconds:
                    last_sent = loop.time()
                    yield b": keep-alive\n\n"
                if done is not None and loop.time() - last_done_check >= DONE_CHECK_SECONDS:
                    last_done_check = loop.time()
                    if await done(last_seq):
                        return
                continue
            seq = msg.metadata.sequence.stream
            if seq <= last_seq:
                continue
            last_seq = seq
            try:
                event = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                event = None
            if not isinstance(event, dict):
                if visible is not None:
                    continue  # nothing to judge it by: withheld
                event = {}
            if visible is not None and not visible(event):
                continue
            event_type = str(event.get("type") or "message")
            last_sent = loop.time()
            yield format_sse(seq, event_type, msg.data)
            if ends is not None and ends(event):
                return
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
