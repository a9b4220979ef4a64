"""Publishes committed outbox rows to JetStream in order, then marks them sent.

A crash after publishing but before marking re-publishes the rows on the next run; JetStream
drops the copies by Nats-Msg-Id (the duplicate window covers it). Every process that writes
outbox rows runs a relay that its own commits wake at once; polling picks up rows left behind
by a process that died between commit and publish.

A row the server can never accept (over its payload limit) is parked with its error instead of
retried: otherwise it would hold back every later command and event. Transient failures (no
responders, timeouts, a reconnecting client) keep the rows unsent, in order, and are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from nats.errors import BadSubjectError, MaxPayloadError
from nats.js import JetStreamContext
from nats.js.errors import APIError
from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix.db.engine import OUTBOX_CHANNEL, Database
from openpitrix.db.types import utcnow
from openpitrix.outbox.models import OutboxMessage

log = logging.getLogger(__name__)

SENT_RETENTION = timedelta(hours=1)
# PostgreSQL advisory lock key shared by every relay of one database ("opoutb").
RELAY_LOCK_KEY = 0x6F706F757462
# JetStream answers that no retry can change: the message or its headers exceed the stream's
# limits (JSStreamMessageExceedsMaximumErr, JSStreamHeaderExceedsMaximumErr).
PERMANENT_API_ERRORS = frozenset({10054, 10097})


class OversizedMessage(Exception):
    """Payload and headers together exceed the server's max_payload."""


def is_permanent(exc: Exception) -> bool:
    """Whether publishing this message can never succeed, however often it is retried."""
    if isinstance(exc, MaxPayloadError | BadSubjectError | OversizedMessage):
        return True
    return isinstance(exc, APIError) and exc.err_code in PERMANENT_API_ERRORS


def wire_size(payload: bytes, headers: dict[str, str]) -> int:
    """Bytes the server counts against max_payload: the header block plus the payload."""
    block = 10 + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items()) + 2
    return block + len(payload)


@dataclass(frozen=True)
class ParkedMessage:
    msg_id: str
    subject: str
    error: str
    parked_at: datetime


async def parked_messages(
    session: AsyncSession, limit: int = 10
) -> tuple[int, list[ParkedMessage]]:
    """How many rows are parked, and the latest `limit` of them (for the health detail)."""
    parked = col(OutboxMessage.parked_at).is_not(None)
    total = (await session.execute(select(func.count()).where(parked))).scalar_one()
    rows = (
        await session.execute(
            select(OutboxMessage).where(parked).order_by(col(OutboxMessage.seq).desc()).limit(limit)
        )
    ).scalars()
    latest = [
        ParkedMessage(r.msg_id, r.subject, r.error or "", r.parked_at)
        for r in rows
        if r.parked_at is not None
    ]
    return int(total), latest


async def unsent_count(session: AsyncSession, subject: str) -> int:
    """How many rows for `subject` are committed but not yet published (parked ones too)."""
    query = select(func.count()).where(
        col(OutboxMessage.subject) == subject, col(OutboxMessage.sent_at).is_(None)
    )
    return int((await session.execute(query)).scalar_one())


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        js: JetStreamContext,
        *,
        poll_seconds: float,
        batch_size: int = 256,
        max_payload: Callable[[], int] | None = None,
    ) -> None:
        self._db = db
        self._js = js
        self._poll = poll_seconds
        self._batch = batch_size
        self._max_payload = max_payload
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_purge = 0.0
        db.on_outbox_commit(self.wake)

    def wake(self) -> None:
        self._wake.set()

    async def _listen(self) -> Any:
        """PostgreSQL: wake on commits of other processes too (NOTIFY from Database)."""
        if self._db.dialect != "postgresql":
            return None
        try:
            conn = await asyncpg.connect(self._db.asyncpg_dsn())
            await conn.add_listener(OUTBOX_CHANNEL, lambda *_: self.wake())
        except Exception as exc:  # polling still covers it
            log.warning("outbox relay cannot LISTEN, polling only: %s", exc)
            return None
        return conn

    async def run(self) -> None:
        listener = await self._listen()
        try:
            await self._loop()
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()

    async def _loop(self) -> None:
        failures = 0
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()
            try:
                while await self.publish_pending() == self._batch:
                    pass
                await self._purge_sent()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("outbox relay failed (attempt %d): %s", failures, exc)
                await asyncio.sleep(min(0.2 * 2**failures, 10.0))

    async def stop(self) -> None:
        """Flush what is pending, then stop the loop."""
        self._stopping = True
        self._wake.set()
        with contextlib.suppress(Exception):
            while await self.publish_pending() == self._batch:
                pass

    async def publish_pending(self) -> int:
        """Publish one batch of unsent rows in `seq` order; returns how many were sent."""
        if self._db.dialect == "postgresql":
            return await self._publish_locked()
        return await self._publish_unlocked()

    def _unsent(self) -> Select[OutboxMessage]:
        return (
            select(OutboxMessage)
            .where(col(OutboxMessage.sent_at).is_(None), col(OutboxMessage.parked_at).is_(None))
            .order_by(col(OutboxMessage.seq))
            .limit(self._batch)
        )

    async def _publish(self, rows: Sequence[OutboxMessage]) -> dict[int, str]:
        """Publish `rows`; returns the rows parked (seq -> error). A transient error raises."""
        # One at a time, each acked before the next: the stream keeps the rows' order even when
        # two relays publish the same rows (the later copy of each is dropped by Nats-Msg-Id).
        parked: dict[int, str] = {}
        for row in rows:
            headers = {"Nats-Msg-Id": row.msg_id, **row.headers}
            try:
                self._check_size(row.payload, headers)
                await self._js.publish(row.subject, row.payload, headers=headers)
            except Exception as exc:
                if not is_permanent(exc):
                    raise
                assert row.seq is not None
                parked[row.seq] = f"{type(exc).__name__}: {exc}"
                log.error(
                    "outbox message parked, it can never be published: msg_id=%s subject=%s "
                    "size=%d error=%s",
                    row.msg_id,
                    row.subject,
                    len(row.payload),
                    parked[row.seq],
                )
        return parked

    def _check_size(self, payload: bytes, headers: dict[str, str]) -> None:
        """The client checks the payload alone; the server counts the headers too and answers a
        message over its limit by closing the connection, which would look transient forever."""
        limit = self._max_payload() if self._max_payload else 0
        size = wire_size(payload, headers)
        if limit and size > limit:
            raise OversizedMessage(
                f"maximum payload exceeded: {size} bytes with headers, server max_payload {limit}"
            )

    async def _mark_sent(
        self, session: AsyncSession, rows: Sequence[OutboxMessage], parked: dict[int, str]
    ) -> None:
        sent = [r.seq for r in rows if r.seq not in parked]
        now = utcnow()
        if sent:
            await session.execute(
                update(OutboxMessage).where(col(OutboxMessage.seq).in_(sent)).values(sent_at=now)
            )
        for seq, error in parked.items():
            await session.execute(
                update(OutboxMessage)
                .where(col(OutboxMessage.seq) == seq)
                .values(parked_at=now, error=error)
            )

    async def _publish_locked(self) -> int:
        """PostgreSQL: relays take turns under a transaction-scoped advisory lock.

        Skipping rows another relay holds (SKIP LOCKED) would publish later rows before earlier
        ones; waiting for the lock instead, the next relay reads what is still unsent after the
        previous one committed its `sent_at` marks.
        """
        async with self._db.transaction() as session:
            await session.execute(select(func.pg_advisory_xact_lock(RELAY_LOCK_KEY)))
            rows = (await session.execute(self._unsent())).scalars().all()
            if rows:
                await self._mark_sent(session, rows, await self._publish(rows))
            return len(rows)

    async def _publish_unlocked(self) -> int:
        """SQLite: its write lock covers the whole file, so it is never held while publishing."""
        async with self._db.read_session() as session:
            rows = (await session.execute(self._unsent())).scalars().all()
        if not rows:
            return 0
        parked = await self._publish(rows)
        async with self._db.transaction() as session:
            await self._mark_sent(session, rows, parked)
        return len(rows)

    async def _purge_sent(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_purge < 60:
            return
        self._last_purge = loop.time()
        async with self._db.transaction() as session:
            await session.execute(
                delete(OutboxMessage).where(col(OutboxMessage.sent_at) < utcnow() - SENT_RETENTION)
            )
