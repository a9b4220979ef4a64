"""The event document carried on op.evt.> and sent to SSE clients."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class EventType(StrEnum):
    JOB_STATUS = "job.status"
    TASK_STATUS = "task.status"
    TASK_PROGRESS = "task.progress"
    TASK_LOG = "task.log"
    RESOURCE_STATUS = "resource.status"


class ResourceRef(BaseModel):
    kind: str
    id: str


class Event(BaseModel):
    """One event. On SSE, `id:` is the JetStream sequence, `event:` is `type`."""

    id: str = Field(description="Unique event id (also the Nats-Msg-Id).")
    type: EventType
    ts: datetime
    job_id: str | None = None
    task_id: str | None = None
    resource: ResourceRef
    owner: str = Field("", description="Owner of the resource (user id).")
    owner_path: str = Field(
        "", description="The owner's `<group path>:<user id>`; group-scoped feeds filter on it."
    )
    status: str | None = None
    message: str = ""
    progress: int | None = Field(None, description="Percent done, when known.")
    data: dict[str, Any] = Field(default_factory=dict)
