"""The outbox: a committed message is published exactly once to the stream, even when the
process died before publishing or before marking it sent."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy import event, select, update
from sqlalchemy.engine import Engine
from sqlmodel import col

from openpitrix.bus.topology import ensure_topology, event_subject
from openpitrix.db.engine import Database
from openpitrix.outbox.models import OutboxMessage
from openpitrix.outbox.relay import OutboxRelay, unsent_count
from openpitrix.outbox.writer import enqueue
from openpitrix.settings import Settings
from tests.conftest import PG_ENV


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_url)
    yield nc
    await nc.close()


@pytest.fixture
async def js(nc: Client, settings: Settings) -> JetStreamContext:
    js = nc.jetstream()
    await ensure_topology(js, settings.bus)
    return js


async def _stream_count(js: JetStreamContext, stream: str, subject: str) -> int:
    info = await js.stream_info(stream, subjects_filter=subject)
    return int((info.state.subjects or {}).get(subject, 0))


async def test_committed_rows_are_published_in_order_and_marked_sent(
    db: Database, js: JetStreamContext, settings: Settings, nc: Client
) -> None:
    subject = event_subject("tester", "repo", f"repo-{uuid.uuid4().hex[:8]}", None)
    async with db.transaction() as session:
        ids = [enqueue(session, subject, {"n": n}) for n in range(5)]
    relay = OutboxRelay(db, nc, poll_seconds=0.1)
    while await relay.publish_pending():
        pass

    sub = await js.subscribe(subject, stream=settings.bus.events_stream, ordered_consumer=True)
    got = [await sub.next_msg(timeout=5) for _ in range(5)]
    await sub.unsubscribe()
    assert [m.headers["Nats-Msg-Id"] for m in got if m.headers] == ids
    async with db.read_session() as session:
        rows = (
            (await session.execute(select(OutboxMessage).where(col(OutboxMessage.msg_id).in_(ids))))
            .scalars()
            .all()
        )
    assert all(r.sent_at is not None for r in rows)


async def test_a_relay_publishes_at_most_its_batch_size_per_call_and_reads_anew_each_time(
    db: Database, js: JetStreamContext, settings: Settings, nc: Client
) -> None:
    """The relay's read of unsent rows is built once: each call still reads what is committed
    by then, at most `batch_size` rows, oldest first, and the batches go out in order."""
    relay = OutboxRelay(db, nc, poll_seconds=0.1, batch_size=2)
    while await relay.publish_pending():  # rows other tests left unsent
        pass
    subject = event_subject("tester", "repo", f"repo-{uuid.uuid4().hex[:8]}", None)
    async with db.transaction() as session:
        ids = [enqueue(session, subject, {"n": n}) for n in range(3)]
    assert await relay.publish_pending() == 2
    async with db.transaction() as session:  # committed after the relay's first read
        ids += [enqueue(session, subject, {"n": n}) for n in range(3, 5)]
    sizes = [await relay.publish_pending() for _ in range(4)]
    assert sizes == [2, 1, 0, 0]

    sub = await js.subscribe(subject, stream=settings.bus.events_stream, ordered_consumer=True)
    got = [await sub.next_msg(timeout=5) for _ in range(5)]
    await sub.unsubscribe()
    assert [m.headers["Nats-Msg-Id"] for m in got if m.headers] == ids


async def test_rolled_back_transaction_publishes_nothing(
    db: Database, js: JetStreamContext, settings: Settings, nc: Client
) -> None:
    subject = event_subject("tester", "repo", f"repo-{uuid.uuid4().hex[:8]}", None)
    with pytest.raises(RuntimeError):  # noqa: PT012 - the raise must happen inside the txn
        async with db.transaction() as session:
            enqueue(session, subject, {"n": 1})
            raise RuntimeError("the use case failed")
    relay = OutboxRelay(db, nc, poll_seconds=0.1)
    while await relay.publish_pending():
        pass
    assert await _stream_count(js, settings.bus.events_stream, subject) == 0


async def test_crash_after_publish_before_mark_does_not_duplicate(
    db: Database, js: JetStreamContext, settings: Settings, nc: Client
) -> None:
    subject = event_subject("tester", "repo", f"repo-{uuid.uuid4().hex[:8]}", None)
    async with db.transaction() as session:
        msg_ids = [enqueue(session, subject, {"n": n}) for n in range(3)]
    relay = OutboxRelay(db, nc, poll_seconds=0.1)
    while await relay.publish_pending():
        pass
    # Simulate a relay that published but died before its "mark sent" committed.
    async with db.transaction() as session:
        await session.execute(
            update(OutboxMessage).where(col(OutboxMessage.msg_id).in_(msg_ids)).values(sent_at=None)
        )
    another_relay = OutboxRelay(db, nc, poll_seconds=0.1)
    while await another_relay.publish_pending():
        pass
    assert await _stream_count(js, settings.bus.events_stream, subject) == 3


async def test_relay_wakes_on_local_commit_without_waiting_for_the_poll(
    db: Database, js: JetStreamContext, settings: Settings, nc: Client
) -> None:
    import asyncio

    subject = event_subject("tester", "repo", f"repo-{uuid.uuid4().hex[:8]}", None)
    relay = OutboxRelay(db, nc, poll_seconds=30.0)  # polling alone would take 30 s
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.1)
        sub = await js.subscribe(subject, stream=settings.bus.events_stream, ordered_consumer=True)
        async with db.transaction() as session:
            enqueue(session, subject, {"n": 1})
        msg = await sub.next_msg(timeout=2)
        assert msg.subject == subject
        await sub.unsubscribe()
    finally:
        await relay.stop()
        task.cancel()


@pytest.mark.skipif(
    not os.environ.get(PG_ENV), reason="PostgreSQL only: SQLite relays poll (CI runs this on PG)"
)
async def test_relay_wakes_on_another_process_commit_on_postgresql(
    database_url: str, js: JetStreamContext, settings: Settings, nc: Client
) -> None:
    """A relay must not wait for its poll when another process (its own Database) commits."""
    import asyncio

    writer_db, relay_db = Database(database_url), Database(database_url)
    subject = event_subject("tester", "repo", f"repo-{uuid.uuid4().hex[:8]}", None)
    relay = OutboxRelay(relay_db, nc, poll_seconds=30.0)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.3)
        sub = await js.subscribe(subject, stream=settings.bus.events_stream, ordered_consumer=True)
        async with writer_db.transaction() as session:
            enqueue(session, subject, {"n": 1})
        msg = await sub.next_msg(timeout=3)
        assert msg.subject == subject
        await sub.unsubscribe()
    finally:
        await relay.stop()
        task.cancel()
        await writer_db.dispose()
        await relay_db.dispose()


async def test_commits_close_together_go_out_in_one_batch_of_a_lingering_relay(
    db: Database, js: JetStreamContext, settings: Settings, nc: Client
) -> None:
    """A relay woken by a commit waits `linger_seconds` before it reads: the commits made
    meanwhile are published and marked with it, in order (one read, one mark for all)."""
    drain = OutboxRelay(db, nc, poll_seconds=0.1)
    while await drain.publish_pending():  # rows other tests left unsent
        pass
    marks: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().startswith("UPDATE outbox SET sent_at"):
            marks.append(statement)

    relay = OutboxRelay(db, nc, poll_seconds=30, linger_seconds=2.0)
    running = asyncio.create_task(relay.run())
    subject = event_subject("tester", "repo", f"repo-{uuid.uuid4().hex[:8]}", None)
    event.listen(Engine, "before_cursor_execute", count)
    try:
        ids = []
        for n in range(3):
            async with db.transaction() as session:  # each commit wakes the relay
                ids.append(enqueue(session, subject, {"n": n}))
            await asyncio.sleep(0.05)  # the relay's turn: without lingering it reads now
        sub = await js.subscribe(subject, stream=settings.bus.events_stream, ordered_consumer=True)
        got = [await sub.next_msg(timeout=10) for _ in range(3)]
        await sub.unsubscribe()
        # The relay marks the rows once the stream has acknowledged them, which may be just
        # after the subscriber got them.
        for _ in range(200):
            async with db.read_session() as session:
                if not await unsent_count(session, subject):
                    break
            await asyncio.sleep(0.05)
    finally:
        event.remove(Engine, "before_cursor_execute", count)
        await relay.stop()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert [m.headers["Nats-Msg-Id"] for m in got if m.headers] == ids
    assert len(marks) == 1
