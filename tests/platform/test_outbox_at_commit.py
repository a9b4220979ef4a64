"""Outbox rows are written as their transaction commits (one INSERT for all of them): they
commit with it in the order enqueued, vanish with a rollback, and a handler asking whether a
send is in the outbox sees the ones its own transaction enqueued."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlmodel import col

from openpitrix.bus.topology import event_subject
from openpitrix.db.engine import Database
from openpitrix.outbox.models import OutboxMessage
from openpitrix.outbox.writer import enqueue, enqueued


def _subject() -> str:
    return event_subject("tester", "repo", f"repo-{uuid.uuid4().hex[:8]}", None)


async def _rows(db: Database, subject: str) -> list[OutboxMessage]:
    async with db.read_session() as session:
        found = await session.execute(
            select(OutboxMessage)
            .where(col(OutboxMessage.subject) == subject)
            .order_by(col(OutboxMessage.seq))
        )
        return list(found.scalars().all())


async def test_a_transactions_messages_commit_with_it_in_the_order_enqueued(db: Database) -> None:
    subject = _subject()
    async with db.transaction() as session:
        ids = [enqueue(session, subject, {"n": n}) for n in range(5)]
    rows = await _rows(db, subject)
    assert [r.msg_id for r in rows] == ids
    assert [r.payload for r in rows] == [b'{"n":%d}' % n for n in range(5)]


async def test_messages_of_a_rolled_back_transaction_are_not_written_by_the_next(
    db: Database,
) -> None:
    subject = _subject()
    async with db.session() as session:

        async def failing_handler() -> None:
            async with session.begin():
                enqueue(session, subject, {"n": "lost"})
                raise RuntimeError("the handler failed")

        with pytest.raises(RuntimeError):
            await failing_handler()
        async with session.begin():
            kept = enqueue(session, subject, {"n": "kept"})
    assert [r.msg_id for r in await _rows(db, subject)] == [kept]


async def test_a_send_enqueued_earlier_in_the_transaction_counts_as_enqueued(
    db: Database,
) -> None:
    subject = _subject()
    msg_id = f"cause-{uuid.uuid4().hex[:8]}"
    async with db.transaction() as session:
        assert not await enqueued(session, msg_id)
        enqueue(session, subject, {"n": 1}, msg_id=msg_id)
        assert await enqueued(session, msg_id)
    assert [r.msg_id for r in await _rows(db, subject)] == [msg_id]
