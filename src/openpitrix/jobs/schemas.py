"""Job and task API shapes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class JobStatus(StrEnum):
    PENDING = "pending"
    WORKING = "working"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELLED})


class ErrorInfo(BaseModel):
    code: str
    message: str


class TaskRead(BaseModel):
    task_id: str
    job_id: str
    layer: int
    action: str
    status: JobStatus
    executor: str | None
    attempts: int
    failure_allowed: bool
    result: dict[str, Any]
    error: ErrorInfo | None
    create_time: datetime
    status_time: datetime
    start_time: datetime | None
    end_time: datetime | None


class JobRead(BaseModel):
    job_id: str
    action: str
    status: JobStatus
    resource_kind: str
    resource_id: str
    owner: str
    executor: str | None = Field(
        description="The worker that runs (or last ran) one of the job's tasks; before any "
        "task starts, the job-manager that started the job."
    )
    attempts: int
    progress: int
    params: dict[str, Any]
    result: dict[str, Any] = Field(description="Counts and figures the job recorded.")
    error: ErrorInfo | None
    create_time: datetime
    status_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    tasks: list[TaskRead] = Field(default_factory=list)


class JobPage(BaseModel):
    total_count: int
    items: list[JobRead]


class TaskPage(BaseModel):
    total_count: int
    items: list[TaskRead]
