"""A lean request handler for the routes that need nothing FastAPI's general one provides.

FastAPI's request handler solves a route's dependencies through a general solver on every
request: for each dependency it builds cache keys, asks whether the call uses security scopes,
whether it is a generator, and gathers four kinds of parameters it does not have. For the hot
lists that solver was about a quarter of the gateway's CPU per request (~25 us a dependency
on these hosts), for routes whose every dependency takes the request and nothing else.

`LeanRoute` keeps FastAPI's handler and, for a route that qualifies, puts a lean one in front
of it: it calls the same dependencies, in the same order, once each per request (as FastAPI's
cache does), passes the path parameters, awaits the endpoint and returns its response. A
route qualifies when FastAPI would do no more than that for it:

- no body, no streaming response class;
- the endpoint is a coroutine function annotated to return a `Response` (so there is no
  response model to validate or serialize) and takes only plain `str` path parameters, the
  request and dependencies;
- each dependency, the app's and the router's included, is an async callable taking only the
  request, with no dependencies of its own.

Anything else uses FastAPI's handler, and so does every request made while dependency
overrides are set (tests) or while FastAPI's telemetry records the request.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import fastapi.routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.telemetry import get_telemetry_data
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


@dataclass(frozen=True, slots=True)
class Step:
    """One dependency: its call, the endpoint argument it fills (None for a route's or the
    app's `dependencies=[...]`), the keyword its request goes in, and whether a value solved
    earlier in the request is reused (FastAPI's `use_cache`)."""

    call: Callable[..., Awaitable[Any]]
    name: str | None
    request_param: str
    use_cache: bool


@dataclass(frozen=True, slots=True)
class Plan:
    endpoint: Callable[..., Awaitable[Any]]
    path_params: tuple[str, ...]
    steps: tuple[Step, ...]
    request_param: str | None


class LeanRoute(APIRoute):
    """An `APIRoute` whose handler is lean when the route qualifies (see the module)."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        state = _route_state(self)
        plan = lean_plan(state) if state is not None else None
        if plan is None:
            return handler
        return lean_handler(plan, handler, state)


def _route_state(route: APIRoute) -> Any:
    """What FastAPI builds this handler from: for a route of an included router, the
    effective route (the app's and the router's dependencies added), which FastAPI passes
    through a context variable. None when this FastAPI has no such variable: the lean handler
    would then miss the app's dependencies, so the route keeps FastAPI's handler."""
    var = getattr(fastapi.routing, "_effective_route_context_var", None)
    if var is None:
        return None
    context = var.get()
    if context is not None and getattr(context, "original_route", None) is route:
        return context
    return route


def lean_plan(state: Any) -> Plan | None:
    """The lean plan for a route (its effective state), or None when FastAPI's handler must
    do it."""
    dependant: Dependant | None = getattr(state, "dependant", None)
    if dependant is None or dependant.call is None:
        return None
    if (
        getattr(state, "body_field", None) is not None
        or getattr(state, "is_sse_stream", False)
        or getattr(state, "is_json_stream", False)
        or getattr(state, "stream_item_field", None) is not None
    ):
        return None
    endpoint = dependant.call
    if not inspect.iscoroutinefunction(endpoint) or not _returns_response(endpoint):
        return None
    if _has_params_besides_path(dependant) or not all(
        _plain_str(field) for field in dependant.path_params
    ):
        return None
    steps: list[Step] = []
    for sub in dependant.dependencies:
        step = _step(sub)
        if step is None:
            return None
        steps.append(step)
    return Plan(
        endpoint=endpoint,
        path_params=tuple(field.name for field in dependant.path_params),
        steps=tuple(steps),
        request_param=dependant.request_param_name,
    )


def lean_handler(plan: Plan, fallback: Handler, state: Any) -> Handler:
    endpoint = plan.endpoint
    path_params = plan.path_params
    steps = plan.steps
    request_param = plan.request_param
    provider = getattr(state, "dependency_overrides_provider", None)

    async def lean(request: Request) -> Response:
        if (
            provider is not None and getattr(provider, "dependency_overrides", None)
        ) or get_telemetry_data() is not None:
            return await fallback(request)
        given = request.path_params
        values: dict[str, Any] = {name: given[name] for name in path_params}
        solved: dict[Callable[..., Any], Any] = {}
        for step in steps:
            if step.use_cache and step.call in solved:
                value = solved[step.call]
            else:
                value = await step.call(**{step.request_param: request})
                if step.use_cache:
                    solved[step.call] = value
            if step.name is not None:
                values[step.name] = value
        if request_param is not None:
            values[request_param] = request
        response: Response = await endpoint(**values)
        return response

    return lean


def _step(sub: Dependant) -> Step | None:
    call = sub.call
    if (
        call is None
        or sub.dependencies
        or sub.request_param_name is None
        or _has_params_besides_path(sub)
        or sub.path_params
        or sub.concurrency is not None
        or not _is_async(call)
    ):
        return None
    return Step(
        call=call, name=sub.name, request_param=sub.request_param_name, use_cache=sub.use_cache
    )


def _has_params_besides_path(dependant: Dependant) -> bool:
    return bool(
        dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
    )


def _plain_str(field: Any) -> bool:
    info = field.field_info
    return info.annotation is str and not info.metadata


def _returns_response(endpoint: Callable[..., Any]) -> bool:
    try:
        hints = typing.get_type_hints(endpoint)
    except Exception:  # an annotation that does not resolve: let FastAPI handle the route
        return False
    returned = hints.get("return")
    return isinstance(returned, type) and issubclass(returned, Response)


def _is_async(call: Callable[..., Any]) -> bool:
    if inspect.isasyncgenfunction(call) or inspect.isgeneratorfunction(call):
        return False
    if inspect.iscoroutinefunction(call):
        return True
    if inspect.isroutine(call) or inspect.isclass(call):
        return False
    dunder = getattr(call, "__call__", None)  # noqa: B004 - an instance's __call__
    return dunder is not None and inspect.iscoroutinefunction(dunder)
