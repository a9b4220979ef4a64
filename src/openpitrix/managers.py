"""Every manager this build can run, by the name the bus topology declares for it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from openpitrix.bus.topology import JOB_MANAGER, REPO_INDEXER, REPO_MANAGER, TASK_MANAGER
from openpitrix.composition import Registry, build_registry
from openpitrix.indexer.handlers import repo_indexer
from openpitrix.jobs.manager import job_manager
from openpitrix.jobs.tasks import task_manager, task_runner
from openpitrix.repos.handlers import repo_manager
from openpitrix.workers.service import Manager

MANAGER_FACTORIES: dict[str, Callable[[Registry], Manager]] = {
    REPO_MANAGER: lambda registry: repo_manager(task_runner(registry.job_adapters)),
    REPO_INDEXER: lambda registry: repo_indexer(task_runner(registry.job_adapters)),
    JOB_MANAGER: lambda registry: job_manager(registry.job_adapters),
    TASK_MANAGER: lambda registry: task_manager(registry.job_adapters),
}


def build_managers(names: list[str] | None, registry: Registry | None = None) -> list[Manager]:
    """The named managers (all when None), built from `registry` (the composition root's own
    when None)."""
    chosen = names or list(MANAGER_FACTORIES)
    unknown = [n for n in chosen if n not in MANAGER_FACTORIES]
    if unknown:
        raise ValueError(
            f"unknown manager(s): {', '.join(unknown)}; known: {', '.join(MANAGER_FACTORIES)}"
        )
    registry = registry or build_registry()
    # A stopping worker lets every loaded provider release its pooled connections.
    close = registry.providers.close
    return [dataclasses.replace(MANAGER_FACTORIES[n](registry), on_stop=close) for n in chosen]
