"""What a job adapter hands the engine: planned tasks, and the failure a task or a plan raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class TaskError(Exception):
    """A task (or a plan) that cannot go on, with a stable code. `retryable` marks transient
    failures (API 5xx, connection resets, throttling) that a later attempt may get past."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class PlannedTask:
    """One task of a job plan; tasks of one layer may run in parallel."""

    action: str
    params: dict[str, Any] = field(default_factory=dict)
    failure_allowed: bool = False
    timeout_seconds: float | None = None  # None: the worker's default
