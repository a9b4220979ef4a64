"""Write a message into the outbox inside the caller's transaction."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from openpitrix.db.engine import OUTBOX_WAKE_KEY
from openpitrix.outbox.models import OutboxMessage


def enqueue(
    session: AsyncSession,
    subject: str,
    payload: bytes | dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    msg_id: str | None = None,
) -> str:
    """Add a message to publish once the transaction commits; returns its Nats-Msg-Id."""
    msg_id = msg_id or uuid.uuid4().hex
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    session.add(OutboxMessage(msg_id=msg_id, subject=subject, payload=body, headers=headers or {}))
    # Read by the after_commit hook: wakes this process's relay as soon as the row is durable.
    session.info[OUTBOX_WAKE_KEY] = True
    return msg_id
