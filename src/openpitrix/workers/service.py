"""What a manager is: named commands (a payload model and a handler), a give-up hook, and
periodic duties."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, TypeVar

import httpx
from nats.js import JetStreamContext
from pydantic import BaseModel

from openpitrix.crypto import SecretBox, load_secret_box
from openpitrix.db.engine import Database
from openpitrix.settings import Settings


class RetryableError(Exception):
    """A transient failure: the command is redelivered after `delay` seconds."""

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(Exception):
    """A failure that no retry will fix: the command is terminated and the job records why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class WorkerContext:
    """Process resources a handler may use (they belong to the worker's lifespan)."""

    settings: Settings
    db: Database
    js: JetStreamContext
    http: httpx.AsyncClient
    executor: str

    @cached_property
    def secrets(self) -> SecretBox:
        return load_secret_box(self.settings)


@dataclass(frozen=True)
class Delivery:
    """One delivery of a command, its payload validated against the verb's model."""

    subject: str
    verb: str
    payload: BaseModel
    num_delivered: int
    last_attempt: bool
    heartbeat: Callable[[], Awaitable[None]]


P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class Command(Generic[P]):
    """A verb a manager handles: the consumer validates the payload against `payload` before
    `handle` runs, and terminates a command that does not fit at once (no retry can fix it)."""

    payload: type[P]
    handle: Callable[[WorkerContext, Delivery, P], Awaitable[None]]


GiveUp = Callable[[WorkerContext, Delivery, str, str], Awaitable[None]]
PeriodicDuty = Callable[[WorkerContext], Awaitable[None]]


@dataclass(frozen=True)
class Periodic:
    name: str
    interval: Callable[[Settings], float]
    run: PeriodicDuty


@dataclass(frozen=True)
class Manager:
    name: str
    commands: dict[str, Command[Any]]
    on_give_up: GiveUp | None = None
    periodic: list[Periodic] = field(default_factory=list)
    # Commands handled at once by default (else worker.concurrency).
    concurrency: Callable[[Settings], int] | None = None
    # Let go of what the manager's work pooled (provider connections) when its group stops;
    # the composition root hands it in, so workers/ knows no provider.
    on_stop: Callable[[], Awaitable[None]] | None = None

    def default_concurrency(self, settings: Settings) -> int:
        if self.concurrency is not None:
            return self.concurrency(settings)
        return settings.worker.concurrency
