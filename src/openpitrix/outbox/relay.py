"""Publishes committed outbox rows to JetStream, each key's rows in order, then marks them sent.

Order matters per key (a job's commands, a resource's events: outbox.keys), not across the
installation. In a batch every key has one row in flight (pipelined, hundreds of keys at once,
acks routed back by outbox.acks), and a key's next row goes out when the stream acknowledges the
one before it: a key never has two rows in flight and none can overtake an earlier one. A row
whose publish fails stops its key for the batch: the key's later rows stay unpublished and
unsent for the next attempt, while other keys go on. The batch is marked sent in one statement.

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
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson
from nats.aio.client import Client
from nats.errors import BadSubjectError, MaxPayloadError
from nats.js.errors import APIError
from sqlalchemy import (
    Integer,
    Row,
    Text,
    any_,
    bindparam,
    cast,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix.db.engine import OUTBOX_CHANNEL, Database
from openpitrix.db.types import utcnow
from openpitrix.outbox.acks import AckInbox
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
# Rows a relay reads, publishes and marks per batch (per transaction). Each batch ends with its
# slowest key's last ack and costs its own statements and commit: bigger batches spread that
# over more rows (1,000 -> 4,000 took PostgreSQL from ~0.6 to ~0.9 of the bare publisher). A
# row still waits only for the older rows, as batches are read in seq order.
BATCH_SIZE = 4000
# How many of the oldest unsent rows a relay looks at to pick the shards it claims.
CLAIM_WINDOW = 4096
# JetStream answers that no retry can change: the message or its headers exceed the stream's
# limits (JSStreamMessageExceedsMaximumErr, JSStreamHeaderExceedsMaximumErr).
PERMANENT_API_ERRORS = frozenset({10054, 10097})
# Bytes a Nats-Msg-Id header block can take at most (msg ids are up to 40 characters).
HEADROOM = 128


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
    # As text: most rows have none ("{}"), and only the others need decoding.
    cast(col(OutboxMessage.headers), Text).label("headers"),
)
# A row as the relay reads it: seq, msg_id, subject, key, payload, headers (as text).
OutboxRow = Row[int | None, str, str, str, bytes, str]
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

# Marking a batch sent: one statement, compiled once. SQLite binds each seq (up to its limit of
# host parameters per statement, 32,766), PostgreSQL one array.
SQLITE_MARK_CHUNK = 10_000
MARK_SENT = (
    update(OutboxMessage)
    .where(col(OutboxMessage.seq).in_(bindparam("seqs", expanding=True)))
    .values(sent_at=bindparam("now"))
)
MARK_SENT_PG = (
    update(OutboxMessage)
    .where(col(OutboxMessage.seq) == any_(bindparam("seqs", type_=ARRAY(Integer))))
    .values(sent_at=bindparam("now"))
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
        nc: Client,
        *,
        poll_seconds: float,
        batch_size: int = BATCH_SIZE,
        publish_timeout: float = 5.0,
        wake_on: Database | None = None,
        linger_seconds: float = 0.0,
    ) -> None:
        """`wake_on`: the database whose outbox commits wake the relay (default `db`; the
        relay may read and mark through a lane of its own, `Database.lane`). `linger_seconds`:
        how long a wake-up waits before reading, so that commits close together share a
        batch."""
        self._db = db
        self._nc = nc
        self._acks = AckInbox(nc)
        self._one_batch = asyncio.Lock()
        self._poll = poll_seconds
        self._linger = linger_seconds
        self._batch = batch_size
        # The reads of unsent rows, built once: every wake runs one at least once (on
        # PostgreSQL twice: the batch, then the empty read that ends the loop), and a statement
        # object built anew each time costs its construction and its cache key on every call.
        unsent = select(*ROW_COLUMNS).where(*PENDING).order_by(col(OutboxMessage.seq))
        self._unsent_batch = unsent.limit(batch_size)
        self._unsent_in_shards = unsent.where(
            SHARD_OF_KEY.in_(bindparam("shards", expanding=True))
        ).limit(batch_size)
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
            with contextlib.suppress(Exception):
                await self._acks.close()
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()

    async def _loop(self) -> None:
        failures = 0
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            if self._linger and self._wake.is_set() and not self._stopping:
                # Commits close behind the one that woke the relay join its batch: with many
                # jobs running, one read and one mark for several commits instead of each.
                await asyncio.sleep(self._linger)
            self._wake.clear()
            try:
                # Until nothing is left that this relay may publish. On SQLite a batch smaller
                # than the limit was everything unsent (a commit since woke the relay again);
                # on PostgreSQL it covers only the shards this relay claimed, and other relays
                # may not have been woken.
                while True:
                    published = await self.publish_pending()
                    if not published or (
                        self._db.dialect != "postgresql" and published < self._batch
                    ):
                        break
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
        # One batch at a time per relay (stop() flushes while the loop may be mid-batch): acks
        # reach the batch in flight, and a row is not read again before its batch marks it.
        async with self._one_batch:
            if self._db.dialect == "postgresql":
                return await self._publish_locked()
            return await self._publish_unlocked()

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
            rows = (await session.execute(self._unsent_in_shards, {"shards": shards})).all()
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
            rows = (await session.execute(self._unsent_batch)).all()
        if not rows:
            return 0
        outcome = await self._publish(rows)
        async with self._db.transaction() as session:
            await self._mark(session, outcome)
        if outcome.failure is not None:
            raise outcome.failure
        return len(rows)

    async def _publish(self, rows: Sequence[OutboxRow]) -> BatchOutcome:
        """Publish `rows`, each key's in order, keys side by side: every key has its oldest row
        in flight, and a key's next row goes out as soon as the stream acknowledges the one
        before it, so a key never has two rows in flight and none can overtake an earlier one,
        while the pipe stays full (hundreds of keys in flight). A key stops at its first
        transient failure (its later rows are not sent); a permanent one parks its row and the
        key goes on with the next. No ack at all for `publish_timeout` seconds times out every
        row still in flight."""
        queues: dict[str, deque[OutboxRow]] = {}
        for row in rows:
            queue = queues.get(row.key)
            if queue is None:
                queues[row.key] = queue = deque()
            queue.append(row)
        ready = [queue.popleft() for queue in queues.values()]  # each key's oldest row
        outcome = BatchOutcome(sent=[], parked={})
        in_flight: dict[str, OutboxRow] = {}
        acks: list[tuple[str, Exception | None]] = []
        arrived = asyncio.Event()

        def on_ack(token: str, error: Exception | None) -> None:
            acks.append((token, error))
            arrived.set()

        def next_of(row: OutboxRow) -> None:
            queue = queues.get(row.key)
            if queue:
                ready.append(queue.popleft())

        self._acks.sink = on_ack
        try:
            while ready or in_flight:
                while ready:
                    row = ready.pop()
                    try:
                        in_flight[await self._send(row)] = row
                    except Exception as exc:
                        if self._settle(outcome, queues, row, exc):
                            next_of(row)
                if not in_flight:
                    break
                if not acks:
                    arrived.clear()
                    try:
                        await asyncio.wait_for(arrived.wait(), self._timeout)
                    except TimeoutError:
                        for row in in_flight.values():
                            self._settle(outcome, queues, row, PublishTimeout(self._timeout))
                        break
                taken = acks.copy()
                acks.clear()
                for token, error in taken:
                    acked = in_flight.pop(token, None)
                    if acked is None:
                        continue  # an earlier batch's, acknowledged after it gave up waiting
                    if error is None:
                        outcome.sent.append(acked.seq)
                        next_of(acked)
                    elif self._settle(outcome, queues, acked, error):
                        next_of(acked)
        finally:
            self._acks.sink = None
        self.published += len(outcome.sent)
        return outcome

    async def _send(self, row: OutboxRow) -> str:
        headers = {"Nats-Msg-Id": row.msg_id}
        if row.headers != "{}":  # the column's text: most rows carry no headers of their own
            headers = {"Nats-Msg-Id": row.msg_id, **orjson.loads(row.headers)}
        self._check_size(row.payload, headers)
        return await self._acks.publish(row.subject, row.payload, headers)

    def _settle(
        self,
        outcome: BatchOutcome,
        queues: dict[str, deque[OutboxRow]],
        row: OutboxRow,
        exc: BaseException,
    ) -> bool:
        """A row that failed: parked when no retry can help (its key goes on: True), else its
        key stops for the batch (publishing its later rows now would let them overtake it)."""
        if not isinstance(exc, Exception) or not is_permanent(exc):
            queues.pop(row.key, None)
            if outcome.failure is None:
                outcome.failure = exc if isinstance(exc, Exception) else RuntimeError(str(exc))
            return False
        outcome.parked[row.seq] = f"{type(exc).__name__}: {exc}"
        log.error(
            "outbox message parked, it can never be published: msg_id=%s subject=%s size=%d "
            "error=%s",
            row.msg_id,
            row.subject,
            len(row.payload),
            outcome.parked[row.seq],
        )
        return True

    def _check_size(self, payload: bytes, headers: dict[str, str]) -> None:
        """The client checks the payload alone; the server counts the headers too and answers a
        message over its limit by closing the connection, which would look transient forever."""
        limit = self._nc.max_payload
        if len(payload) + HEADROOM < limit and len(headers) == 1:
            return  # far below the limit with only its Nats-Msg-Id: no need to count
        size = wire_size(payload, headers)
        if limit and size > limit:
            raise OversizedMessage(
                f"maximum payload exceeded: {size} bytes with headers, server max_payload {limit}"
            )

    async def _mark(self, session: AsyncSession, outcome: BatchOutcome) -> None:
        now = utcnow()
        if self._db.dialect == "postgresql":
            if outcome.sent:  # one array parameter, however long the batch
                await session.execute(MARK_SENT_PG, {"seqs": outcome.sent, "now": now})
        else:
            for i in range(0, len(outcome.sent), SQLITE_MARK_CHUNK):
                chunk = outcome.sent[i : i + SQLITE_MARK_CHUNK]
                await session.execute(MARK_SENT, {"seqs": chunk, "now": now})
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
