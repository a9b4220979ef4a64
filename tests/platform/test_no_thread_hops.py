"""Every route's endpoint and dependencies run on the event loop.

FastAPI runs a plain `def` endpoint or dependency in the thread pool: a thread hand-off per
request (a futex wake-up, a capacity limiter, the loop's wake-up pipe), which on this kind of
host cost more than the attribute reads these functions do. A POST /v1/clusters paid it twice,
every SSE connection once."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from openpitrix.gateway import create_app
from openpitrix.settings import Settings


def _on_the_loop(call: Any) -> bool:
    # A function, or an instance whose class defines an async __call__.
    for fn in (call, getattr(type(call), "__call__", None)):  # noqa: B004
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            return True
    return False


def _threaded(dependant: Dependant) -> list[str]:
    found = []
    for sub in dependant.dependencies:
        if sub.call is not None and not _on_the_loop(sub.call):
            found.append(getattr(sub.call, "__qualname__", repr(sub.call)))
        found += _threaded(sub)
    return found


def test_no_route_runs_its_endpoint_or_a_dependency_in_the_thread_pool() -> None:
    threaded: dict[str, list[str]] = {}
    routes = 0
    for context in iter_route_contexts(create_app(Settings()).routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        routes += 1
        found = _threaded(route.dependant)
        if not _on_the_loop(route.endpoint):
            found.append(route.endpoint.__qualname__)
        if found:
            threaded[f"{sorted(route.methods)} {context.path}"] = found
    assert routes > 40
    assert threaded == {}
