"""The repo-manager: runs the tasks of repo delete jobs (the job engine's `run`), and takes over
delete commands queued in the form before the engine."""

from __future__ import annotations

from openpitrix.bus.topology import REPO_MANAGER
from openpitrix.jobs.adapter import TaskRunner
from openpitrix.workers.service import Manager

# The verb that ran a whole delete job before the engine did; only commands queued before an
# upgrade still arrive on it.
LEGACY_DELETE = "delete"


def repo_manager(tasks: TaskRunner) -> Manager:
    """The repo-manager, running the delete tasks the adapters route to it with the engine's
    `tasks` runner. The composition root hands the runner in (built from the adapters, the
    indexer's among them, which deletes the catalog), so repos imports neither the indexer
    nor the workers' engine."""
    return Manager(
        name=REPO_MANAGER,
        commands={**tasks.commands, LEGACY_DELETE: tasks.hand_over},
        on_give_up=tasks.on_give_up,
    )
