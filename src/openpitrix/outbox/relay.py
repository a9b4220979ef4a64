"""Publishes committed outbox rows to JetStream, each key's rows in order, then marks them sent.

Order matters per key (a job's commands, a resource's events: outbox.keys), not across the
installation. A batch goes out in waves: each wave publishes the next row of every key at once
(pipelined, hundreds in flight) and awaits their acks together, so a key never has two rows in
flight and none can overtake an earlier one. A row whose publish fails stops its key for the
batch: the key's later rows stay unpublished and unsent for the next attempt, while other keys
go on. The batch is marked sent in one statement.

A crash mid-batch, or after publishing but before marking, re-publishes the rows on the next
run; JetStream drops the copies by Nats-Msg-Id (the duplicate window covers it). Two relays
publishing the same rows keep each key's order too: each publishes a key's unsent rows in
order, so the first copy of any row reaches the stream after the first copy of every earlier
row of its key. Locks (PostgreSQL, `claim_shards`) only keep relays from doing the same work
twice and let them share it. Every process that writes outbox rows runs a relay that its own
commits wake at once; polling picks up rows left behind by a process that died between commit
and publish.

A row the server can never accept (over its payload limit) is parked with its error instead of
retried: otherwise it would hold back every later message of its key. Transient failures (no
responders, timeouts, a reconnecting client) keep the key's rows unsent, in order, for a retry.
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
from sqlalchemy import Row, Select, bindparam, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix.db.engine import OUTBOX_CHANNEL, Database
from openpitrix.db.types import utcnow
from openpitrix.outbox.models import OutboxMessage

log = logging.getLogger(__name__)

SENT_RETENTION = timedelta(hours=1)
# PostgreSQL: a key's rows belong to one of SHARDS shards (hashtext(key) & (SHARDS - 1)); a relay
# publishes a shard's rows only while holding its advisory lock (SHARD_LOCK_CLASS, shard). Each
# relay process holds (MEMBER_LOCK_CLASS, its backend pid) while it runs, so relays count each
# other and each claims a fair share of the shards per batch.
SHARDS = 64
SHARD_LOCK_CLASS = 0x6F707368  # "opsh"
MEMBER_LOCK_CLASS = 0x6F70726C  # "oprl"
# How many of the oldest unsent rows a relay looks at to pick the shards it claims.
CLAIM_WINDOW = 4096
# JetStream answers that no retry can change: the message or its headers exceed the stream's
# limits (JSStreamMessageExceedsMaximumErr, JSStreamHeaderExceedsMaximumErr).
PERMANENT_API_ERRORS = frozenset({10054, 10097})


class OversizedMessage(Exception):
    """Payload and headers together exceed the server's max_payload."""


class PublishTimeout(TimeoutError):
    """No ack within the relay's publish timeout (the message may or may not be stored)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no ack within {seconds:g} s")


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


PENDING = (col(OutboxMessage.sent_at).is_(None), col(OutboxMessage.parked_at).is_(None))
ROW_COLUMNS = (
    col(OutboxMessage.seq),
    col(OutboxMessage.msg_id),
    col(OutboxMessage.subject),
    col(OutboxMessage.key),
    col(OutboxMessage.payload),
    col(OutboxMessage.headers),
)
SHARD_OF_KEY = func.hashtext(col(OutboxMessage.key)).op("&")(SHARDS - 1)

# One statement: the shards of the oldest unsent rows, oldest first, each tried without waiting,
# stopping at a fair share (SHARDS / running relays). The lock call sits in the outer WHERE over
# an ordered subquery, so rows are tried one at a time and none past the LIMIT is locked.
CLAIM_SHARDS = text(
    """
    WITH pending AS (
        SELECT hashtext(key) & :mask AS shard, min(seq) AS first
        FROM (SELECT key, seq FROM outbox WHERE sent_at IS NULL AND parked_at IS NULL
              ORDER BY seq LIMIT :window) AS oldest
        GROUP BY 1
    ), relays AS (
        SELECT greatest(count(*), 1) AS n FROM pg_locks
        WHERE locktype = 'advisory' AND classid = :member_class AND objsubid = 2
          AND granted AND database = (SELECT oid FROM pg_database
                                      WHERE datname = current_database())
    )
    SELECT shard FROM (SELECT shard FROM pending ORDER BY first OFFSET 0) AS ordered
    WHERE pg_try_advisory_xact_lock(:shard_class, shard)
    LIMIT (SELECT ceil(CAST(:shards AS numeric) / n)::int FROM relays)
    """
).bindparams(
    mask=SHARDS - 1,
    window=CLAIM_WINDOW,
    member_class=MEMBER_LOCK_CLASS,
    shard_class=SHARD_LOCK_CLASS,
    shards=SHARDS,
)


@dataclass
class BatchOutcome:
    sent: list[int]
    parked: dict[int, str]
    failure: Exception | None = None


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        js: JetStreamContext,
        *,
        poll_seconds: float,
        batch_size: int = 1000,
        max_payload: Callable[[], int] | None = None,
        publish_timeout: float = 5.0,
        wake_on: Database | None = None,
    ) -> None:
        """`wake_on`: the database whose outbox commits wake the relay (default `db`; the
        relay may read and mark through a lane of its own, `Database.lane`)."""
        self._db = db
        self._js = js
        self._poll = poll_seconds
        self._batch = batch_size
        self._max_payload = max_payload
        self._timeout = publish_timeout
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_purge = 0.0
        self.published = 0  # rows this relay published (the benchmark reads it)
        (wake_on or db).on_outbox_commit(self.wake)

    def wake(self) -> None:
        self._wake.set()

    async def _listen(self) -> Any:
        """PostgreSQL: wake on commits of other processes too (NOTIFY from Database), and be
        counted among the running relays (the lock lives as long as this connection)."""
        if self._db.dialect != "postgresql":
            return None
        try:
            conn = await asyncpg.connect(self._db.asyncpg_dsn())
            await conn.execute(f"SELECT pg_advisory_lock({MEMBER_LOCK_CLASS}, pg_backend_pid())")
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
                # Until nothing is left that this relay may publish: a batch smaller than the
                # limit does not mean the end on PostgreSQL, where it covers only the shards
                # this relay claimed, and other relays may not have been woken.
                while await self.publish_pending():
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
            while await self.publish_pending():
                pass

    async def publish_pending(self) -> int:
        """Publish one batch of unsent rows, each key's in `seq` order; returns how many rows the
        batch held. A transient failure raises once the rows before it are marked sent."""
        if self._db.dialect == "postgresql":
            return await self._publish_locked()
        return await self._publish_unlocked()

    def _unsent(self) -> Select[Any]:
        return select(*ROW_COLUMNS).where(*PENDING).order_by(col(OutboxMessage.seq))

    async def claim_shards(self, session: AsyncSession) -> list[int]:
        """PostgreSQL: lock (until `session`'s transaction ends) a fair share of the shards that
        have unsent rows, skipping those other relays hold; returns them."""
        return list((await session.execute(CLAIM_SHARDS)).scalars())

    async def _publish_locked(self) -> int:
        """PostgreSQL: a relay publishes only the shards it claimed, under transaction-scoped
        advisory locks held until its `sent_at` marks commit. The rows are read after the
        locks are taken, so a relay claiming a shard next sees what the previous holder
        marked, and never publishes a row that another relay is publishing at the same time.
        """
        async with self._db.transaction() as session:
            shards = await self.claim_shards(session)
            if not shards:
                return 0
            query = (
                self._unsent()
                .where(SHARD_OF_KEY.in_(bindparam("shards", expanding=True)))
                .limit(self._batch)
            )
            rows = (await session.execute(query, {"shards": shards})).all()
            if rows:
                outcome = await self._publish(rows)
                await self._mark(session, outcome)
        if rows and outcome.failure is not None:
            raise outcome.failure
        return len(rows)

    async def _publish_unlocked(self) -> int:
        """SQLite: its write lock covers the whole file, so it is never held while publishing.
        Relays of several processes do not take turns here: they may publish the same rows,
        which JetStream drops by Nats-Msg-Id, each key still in order (see the module's
        docstring). SQLite runs on one host, where one relay keeps up with its writers."""
        async with self._db.read_session() as session:
            rows = (await session.execute(self._unsent().limit(self._batch))).all()
        if not rows:
            return 0
        outcome = await self._publish(rows)
        async with self._db.transaction() as session:
            await self._mark(session, outcome)
        if outcome.failure is not None:
            raise outcome.failure
        return len(rows)

    async def _publish(self, rows: Sequence[Row[Any]]) -> BatchOutcome:
        """Publish `rows` in waves: each wave sends the next row of every key still going, all
        at once (nats-py's pipelined publish_async), and awaits their acks together. A key thus
        never has two rows in flight, so none can overtake an earlier one: a key stops at its
        first transient failure (its later rows are not sent); a permanent one parks its row
        and the key goes on with the next."""
        queues: dict[str, list[Row[Any]]] = {}
        for row in rows:
            queues.setdefault(row.key, []).append(row)
        for queue in queues.values():
            queue.reverse()  # popped from the end: oldest first
        outcome = BatchOutcome(sent=[], parked={})
        while queues:
            wave: dict[asyncio.Future[Any], tuple[str, Row[Any]]] = {}
            for key, queue in list(queues.items()):
                row = queue.pop()
                if not queue:
                    del queues[key]
                try:
                    future = await self._send(row)
                except Exception as exc:
                    self._settle(outcome, queues, key, row, exc)
                    continue
                wave[future] = (key, row)
            if not wave:
                continue
            done, late = await asyncio.wait(wave, timeout=self._timeout)
            for future in late:
                future.cancel()
            for future, (key, row) in wave.items():
                if future in done and future.exception() is None:
                    outcome.sent.append(row.seq)
                    continue
                error = future.exception() if future in done else None
                self._settle(outcome, queues, key, row, error or PublishTimeout(self._timeout))
        self.published += len(outcome.sent)
        return outcome

    async def _send(self, row: Row[Any]) -> asyncio.Future[Any]:
        headers = {"Nats-Msg-Id": row.msg_id, **row.headers}
        self._check_size(row.payload, headers)
        return await self._js.publish_async(row.subject, row.payload, headers=headers)

    def _settle(
        self,
        outcome: BatchOutcome,
        queues: dict[str, list[Row[Any]]],
        key: str,
        row: Row[Any],
        exc: BaseException,
    ) -> None:
        """A row that failed: parked when no retry can help, else its key stops for the batch
        (publishing its later rows now would let them overtake it)."""
        if not isinstance(exc, Exception) or not is_permanent(exc):
            queues.pop(key, None)
            if outcome.failure is None:
                outcome.failure = exc if isinstance(exc, Exception) else RuntimeError(str(exc))
            return
        outcome.parked[row.seq] = f"{type(exc).__name__}: {exc}"
        log.error(
            "outbox message parked, it can never be published: msg_id=%s subject=%s size=%d "
            "error=%s",
            row.msg_id,
            row.subject,
            len(row.payload),
            outcome.parked[row.seq],
        )

    def _check_size(self, payload: bytes, headers: dict[str, str]) -> None:
        """The client checks the payload alone; the server counts the headers too and answers a
        message over its limit by closing the connection, which would look transient forever."""
        limit = self._max_payload() if self._max_payload else 0
        size = wire_size(payload, headers)
        if limit and size > limit:
            raise OversizedMessage(
                f"maximum payload exceeded: {size} bytes with headers, server max_payload {limit}"
            )

    async def _mark(self, session: AsyncSession, outcome: BatchOutcome) -> None:
        now = utcnow()
        if outcome.sent:
            await session.execute(
                update(OutboxMessage)
                .where(col(OutboxMessage.seq).in_(outcome.sent))
                .values(sent_at=now)
            )
        for seq, error in outcome.parked.items():
            await session.execute(
                update(OutboxMessage)
                .where(col(OutboxMessage.seq) == seq)
                .values(parked_at=now, error=error)
            )

    async def _purge_sent(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_purge < 60:
            return
        self._last_purge = loop.time()
        async with self._db.transaction() as session:
            await session.execute(
                delete(OutboxMessage).where(col(OutboxMessage.sent_at) < utcnow() - SENT_RETENTION)
            )
