"""Record an event in the caller's transaction; the outbox relay publishes it after commit."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openpitrix.bus.topology import event_subject
from openpitrix.db.types import utcnow
from openpitrix.events.schemas import Event, EventType, ResourceRef
from openpitrix.outbox.writer import enqueue


def emit_event(
    session: AsyncSession,
    *,
    type: EventType,
    owner: str,
    owner_path: str,
    resource_kind: str,
    resource_id: str,
    job_id: str | None = None,
    task_id: str | None = None,
    status: str | None = None,
    message: str = "",
    progress: int | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    event = Event(
        id=uuid.uuid4().hex,
        type=type,
        ts=utcnow(),
        job_id=job_id,
        task_id=task_id,
        resource=ResourceRef(kind=resource_kind, id=resource_id),
        owner=owner,
        owner_path=owner_path,
        status=status,
        message=message,
        progress=progress,
        data=data or {},
    )
    enqueue(
        session,
        event_subject(owner, resource_kind, resource_id, job_id),
        event.model_dump_json().encode(),
        msg_id=event.id,
    )
    return event
