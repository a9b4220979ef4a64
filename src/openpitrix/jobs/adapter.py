"""What the job engine asks of a resource kind whose jobs it runs, and the registry of those
adapters that the composition root builds and hands to the gateway and the workers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from openpitrix.jobs.commands import JobCommand
from openpitrix.jobs.models import Job, Task
from openpitrix.jobs.plan import PlannedTask, TaskError
from openpitrix.jobs.schemas import JobStatus
from openpitrix.workers.service import Command, GiveUp, WorkerContext

__all__ = [
    "ChainMemory",
    "JobAdapter",
    "JobAdapters",
    "PlannedTask",
    "Reporter",
    "SlotGiver",
    "TaskError",
    "TaskRunner",
]

Reporter = Callable[[str, int | None, dict[str, Any]], Awaitable[None]]
# Called by a running task that from then on only watches its target (see `jobs.slots`).
SlotGiver = Callable[[], Awaitable[None]]
# What an adapter keeps from one task for the next task of the same job in the same chained
# run (`jobs.tasks`: a task-manager running a job's tasks one after the other under one
# message). It lives as long as that run: a new message, a retry or another worker starts
# with an empty one, so nothing in it outlives what the chain itself holds.
ChainMemory = dict[str, Any]


class JobAdapter(Protocol):
    """What the engine needs from a resource kind whose jobs it runs (clusters, repos)."""

    resource_kind: str

    def runner(self, action: str) -> str:
        """The manager (a name from `bus.topology`) whose `run` command runs tasks of this
        action: the job-manager dispatches each task to that manager's durable consumer."""
        ...

    async def plan(self, session: AsyncSession, job: Job) -> list[list[PlannedTask]]: ...

    async def target(self, session: AsyncSession, job: Job) -> str | None:
        """What the job's tasks act on that other jobs share (a runtime), for the cap."""
        ...

    def run_task(
        self,
        ctx: WorkerContext,
        job: Job,
        task: Task,
        report: Reporter,
        give_back: SlotGiver,
        memory: ChainMemory,
    ) -> Awaitable[dict[str, Any]]:
        """Run the task; `give_back` gives its target's slot to the next queued task once the
        task will only watch the target (a readiness wait). `memory`: the chain's (see
        `ChainMemory`), for what the job's next task may reuse instead of reading it again."""
        ...

    async def task_succeeded(
        self, session: AsyncSession, job: Job, task: Task, result: dict[str, Any]
    ) -> dict[str, Any]:
        """Persist what the task produced; returns the result to show on the task."""
        ...

    async def job_ended(self, session: AsyncSession, job: Job, status: JobStatus) -> None:
        """Release the resource's lock and record the outcome on it."""
        ...

    async def relock(self, session: AsyncSession, job: Job) -> bool:
        """Take the resource's lock again for a retried job; False when another job holds it."""
        ...


class JobAdapters(Mapping[str, JobAdapter]):
    """The adapters by resource kind: fixed when built, one per kind."""

    def __init__(self, adapters: Iterable[JobAdapter] = ()) -> None:
        self._by_kind: dict[str, JobAdapter] = {}
        for adapter in adapters:
            if adapter.resource_kind in self._by_kind:
                raise ValueError(f"two job adapters for {adapter.resource_kind!r} jobs")
            self._by_kind[adapter.resource_kind] = adapter

    def __getitem__(self, kind: str) -> JobAdapter:
        return self._by_kind[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_kind)

    def __len__(self) -> int:
        return len(self._by_kind)

    def runner(self, resource_kind: str, action: str) -> str:
        """The manager that runs tasks of `action` in jobs of `resource_kind`."""
        return self._by_kind[resource_kind].runner(action)


@dataclass(frozen=True)
class TaskRunner:
    """The engine's duties for a manager that runs the tasks adapters route to it, besides
    its own: built by the engine (`jobs.tasks.task_runner`) and handed in by the composition
    root, so a domain's manager never imports the workers' engine."""

    # `run`: claim, run and settle one task.
    commands: dict[str, Command[Any]]
    # A `run` (or a job's first command) that ran out of deliveries fails its task (or job).
    on_give_up: GiveUp
    # A job's first command in the form from before its kind ran on the engine: the
    # job-manager takes the job over.
    hand_over: Command[JobCommand]
