"""Every manager this build can run, by name."""

from __future__ import annotations

from collections.abc import Callable

from openpitrix.indexer.handlers import repo_indexer
from openpitrix.repos.handlers import repo_manager
from openpitrix.workers.service import Manager

MANAGER_FACTORIES: dict[str, Callable[[], Manager]] = {
    "repo-manager": repo_manager,
    "repo-indexer": repo_indexer,
}


def build_managers(names: list[str] | None) -> list[Manager]:
    chosen = names or list(MANAGER_FACTORIES)
    unknown = [n for n in chosen if n not in MANAGER_FACTORIES]
    if unknown:
        raise ValueError(
            f"unknown manager(s): {', '.join(unknown)}; known: {', '.join(MANAGER_FACTORIES)}"
        )
    return [MANAGER_FACTORIES[n]() for n in chosen]
