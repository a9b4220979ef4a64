"""Payloads of the job commands, and the message ids that make each send of a job distinct.

Every message sent on behalf of a job gets an id naming its cause, unique for the job's whole
life (runs, retries, cancels, re-dispatches), so that no send collides with an earlier one in
the outbox or in JetStream's duplicate window; the same cause handled twice (a handler re-run
after a crash before it committed) computes the same id, so its send is not doubled:

- `<job>`: the job's first command (creation).
- `<job>.r<run>`: a retry starting run `run` (Job.run, one more per retry).
- `<job>.r<run>.cancel`: the cancel request of a run (one per run: a second one sends nothing).
- `<task>.d<n>`: the task's n-th dispatch (Task.dispatches, counted in the dispatching
  transaction); a later dispatch supersedes the earlier ones, whose copies are ignored.
- `<task>.d<n>.<status>`: the end of that dispatch (one terminal status per dispatch), which
  asks the job-manager to advance.
- `<job>.handover`: the advance that takes over a job whose first command was queued in the
  form before its kind ran on the engine (`repo-indexer.index`, `repo-manager.delete`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

ADVANCE = "advance"  # the job-manager's verb


class JobCommand(BaseModel):
    """A command about one job: what starts every job, and the job-manager's `advance`."""

    model_config = ConfigDict(strict=True, frozen=True)

    job_id: str = Field(min_length=1, max_length=40)


class RunTask(JobCommand):
    """`run`, of the manager that runs the task's kind (`JobAdapter.runner`): one dispatch of
    one task."""

    task_id: str = Field(min_length=1, max_length=40)
    # Which dispatch of the task this is (Task.dispatches); 0 in commands sent before
    # dispatches were counted, taken as the current one.
    dispatch: int = Field(default=0, ge=0)


def created_id(job_id: str) -> str:
    return job_id


def retry_id(job_id: str, run: int) -> str:
    return f"{job_id}.r{run}"


def cancel_id(job_id: str, run: int) -> str:
    return f"{job_id}.r{run}.cancel"


def dispatch_id(task_id: str, dispatch: int) -> str:
    return f"{task_id}.d{dispatch}"


def task_end_id(task_id: str, dispatch: int, status: str) -> str:
    return f"{task_id}.d{dispatch}.{status}"


def handover_id(job_id: str) -> str:
    return f"{job_id}.handover"
