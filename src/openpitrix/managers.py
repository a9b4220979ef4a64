"""Every manager this build can run, by name."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial

from openpitrix.clusters.jobs import ClusterJobs
from openpitrix.indexer.handlers import repo_indexer
from openpitrix.indexer.sync import delete_catalog
from openpitrix.jobs import engine
from openpitrix.providers.registry import close_providers
from openpitrix.repos.handlers import repo_manager
from openpitrix.workers.service import Manager

MANAGER_FACTORIES: dict[str, Callable[[], Manager]] = {
    "repo-manager": partial(repo_manager, delete_catalog),
    "repo-indexer": repo_indexer,
    "job-manager": engine.job_manager,
    "task-manager": engine.task_manager,
}

# The resource kinds whose jobs the job engine runs.
engine.register(ClusterJobs())


def build_managers(names: list[str] | None) -> list[Manager]:
    chosen = names or list(MANAGER_FACTORIES)
    unknown = [n for n in chosen if n not in MANAGER_FACTORIES]
    if unknown:
        raise ValueError(
            f"unknown manager(s): {', '.join(unknown)}; known: {', '.join(MANAGER_FACTORIES)}"
        )
    # A stopping worker lets every loaded provider release its pooled connections.
    return [dataclasses.replace(MANAGER_FACTORIES[n](), on_stop=close_providers) for n in chosen]
