"""Importing a provider's client library at its first use, in a thread: the event loop keeps
serving while a process pays the import (kubernetes_asyncio ~0.5 s, aioboto3 ~0.15 s), and a
process that never calls the cloud never loads the library at all."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterable

# Modules this process has imported through `import_off_loop`: later calls cost a set lookup.
# (sys.modules is not enough: it holds a module from the moment its import starts, so a second
# caller would go on, use it half-made, or block the loop on the import lock.)
_IMPORTED: set[str] = set()


def _import(modules: Iterable[str]) -> None:
    for name in modules:
        importlib.import_module(name)


async def import_off_loop(*modules: str) -> None:
    """Import `modules` in a worker thread unless this process already did; returns once they
    are importable without blocking. Callers then use plain `import` statements, which find
    the modules loaded. Two first callers at once both wait for the import (Python's import
    lock serialises the threads)."""
    missing = [name for name in modules if name not in _IMPORTED]
    if not missing:
        return
    await asyncio.to_thread(_import, missing)
    _IMPORTED.update(missing)
