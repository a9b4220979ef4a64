"""Job and task tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from openpitrix.db.base import Owned
from openpitrix.db.types import JSONType, UTCDateTime, utcnow


class RunState(SQLModel):
    """What jobs and tasks both record about running: status, who, how often, outcome, when."""

    status: str = Field(default="pending", max_length=16)
    executor: str | None = Field(default=None, max_length=200)
    attempts: int = Field(default=0)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    result: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    error_code: str | None = Field(default=None, max_length=60)
    error_message: str | None = Field(default=None)
    create_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    status_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    start_time: datetime | None = Field(default=None, sa_type=UTCDateTime)
    end_time: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Job(Owned, RunState, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_resource", "resource_kind", "resource_id"),
        Index("ix_jobs_status", "status"),
        Index("ix_jobs_owner", "owner"),
        # The default list order (see apps.models: a page off the index, no sort).
        Index("ix_jobs_create_time", "create_time", "job_id"),
    )

    job_id: str = Field(primary_key=True, max_length=40)
    action: str = Field(max_length=40, index=True)
    resource_kind: str = Field(max_length=30)
    resource_id: str = Field(max_length=40)
    progress: int = Field(default=0)
    # Set by a cancel request; the job-manager ends the job once no task is running.
    cancel_requested: bool = Field(default=False)
    # 0 for the first run, one more per retry: part of the ids of the run's messages.
    run: int = Field(default=0)


class Task(RunState, table=True):
    __tablename__ = "tasks"
    # Every column of a target's slot counts (jobs.slots), which read the index alone.
    __table_args__ = (
        Index("ix_tasks_target_slot", "target", "status", "slot", "create_time", "task_id"),
    )

    task_id: str = Field(primary_key=True, max_length=40)
    job_id: str = Field(max_length=40, foreign_key="jobs.job_id", index=True)
    layer: int = Field(default=0)
    action: str = Field(max_length=60)
    failure_allowed: bool = Field(default=False)
    timeout_seconds: float | None = Field(default=None)
    # What the task acts on, shared with other jobs (a runtime): caps how many run at once.
    target: str | None = Field(default=None, max_length=40)
    # Its share of the target's cap: "held" from dispatch until it ends, "waiting" while
    # queued for a free slot; "sent" once dispatched outside any cap (no target, or no cap);
    # "" when neither dispatched nor queued.
    slot: str = Field(default="", max_length=8)
    # Times the task was sent to the task-managers: numbers each dispatch's message id.
    dispatches: int = Field(default=0)
    # What the task's runs recorded to find their own work again: a run resumed after its
    # worker died (or a retry) reads what the earlier runs kept here (`keep_checkpoint`).
    checkpoint: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    # The id of the command message whose handler runs the task, when the runner that settled
    # its predecessor claimed it in the same transaction and ran it on (a chained run, see
    # `jobs.tasks`): that message, redelivered after the runner died, resumes the task. None
    # for a task claimed from its own dispatch.
    runs_under: str | None = Field(default=None, max_length=80)
