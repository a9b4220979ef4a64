"""Write a message into the outbox inside the caller's transaction."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import orjson
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix.db.engine import OUTBOX_WAKE_KEY, insert_at_commit, write_pending
from openpitrix.db.types import utcnow
from openpitrix.outbox.keys import KEY_MAX, message_key
from openpitrix.outbox.models import OutboxMessage

MSG_ID_MAX = 40  # outbox.msg_id's width
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]


def bounded_msg_id(msg_id: str) -> str:
    """The id itself when it fits the column, else its digest: still one id per cause, so
    de-duplication holds, and PostgreSQL does not refuse the row."""
    if len(msg_id) <= MSG_ID_MAX:
        return msg_id
    return hashlib.sha1(msg_id.encode(), usedforsecurity=False).hexdigest()


def enqueue(
    session: AsyncSession,
    subject: str,
    payload: bytes | dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    msg_id: str | None = None,
    key: str | None = None,
) -> str:
    """Add a message to publish once the transaction commits; returns its Nats-Msg-Id.

    `msg_id` names the send's cause: the outbox refuses a second row with it, and JetStream
    drops a second publication within its duplicate window, so it must differ for every
    distinct send and stay the same when the same send is retried. None means a fresh one.

    `key` names what the message keeps its order with (outbox.keys); None derives it from the
    subject and payload: an event's resource, a command's job."""
    msg_id = bounded_msg_id(msg_id) if msg_id else uuid.uuid4().hex
    key = (key or message_key(subject, payload))[:KEY_MAX]
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    row: dict[str, Any] = {
        "msg_id": msg_id,
        "subject": subject,
        "key": key,
        "payload": body,
        "headers": headers or {},
        "created_at": utcnow(),
    }
    # The transaction's messages go in one INSERT as it commits; no ORM object per message.
    if not insert_at_commit(session, OUTBOX, row):
        session.add(OutboxMessage.model_validate(row))
    # Read by the after_commit hook: wakes this process's relay as soon as the row is durable.
    session.info[OUTBOX_WAKE_KEY] = True
    return msg_id


async def enqueued(session: AsyncSession, msg_id: str) -> bool:
    """Whether a send of this cause is in the outbox already (sent or not): a handler that
    cannot tell from its own rows whether it ran asks this before sending again."""
    await write_pending(session)
    found = await session.execute(
        select(col(OutboxMessage.seq)).where(col(OutboxMessage.msg_id) == bounded_msg_id(msg_id))
    )
    return found.first() is not None
