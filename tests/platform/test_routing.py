"""Domain routers decline paths outside their own at once (api.routing.DomainRouter): every
route is still found by its own router, and a path no route has is a 404, a route asked with
a method it does not have a 405, as FastAPI answers them. Every route is warmed at startup
(api.routing.warm_routes)."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.routing import APIRoute, _IncludedRouter, iter_route_contexts
from starlette.routing import Match

from openpitrix.api.routing import DomainRouter, warm_routes
from openpitrix.gateway import create_app
from openpitrix.settings import Settings


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "zz-none", path)


def test_every_route_is_found_by_its_own_router_and_declined_by_the_others() -> None:
    app = create_app(Settings())
    routers = [route for route in app.router.routes if hasattr(route, "original_router")]
    assert len(routers) >= 8
    assert all(isinstance(r.original_router, DomainRouter) for r in routers)
    checked = 0
    for router in routers:
        for context in iter_route_contexts(router.original_router.routes):
            if not isinstance(context.original_route, APIRoute):
                continue
            method = sorted(context.original_route.methods)[0]
            scope = {"type": "http", "method": method, "path": _concrete(str(context.path))}
            found = [r for r in routers if r.matches(dict(scope))[0] == Match.FULL]
            assert found == [router], (method, context.path, found)
            checked += 1
    assert checked > 40


async def test_unknown_paths_are_404_and_wrong_methods_405() -> None:
    transport = httpx.ASGITransport(app=create_app(Settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        assert (await http.get("/v1/no-such-thing")).status_code == 404
        assert (await http.get("/v1/appsX")).status_code == 404  # a prefix, not a route
        assert (await http.put("/v1/apps")).status_code == 405
        assert (await http.delete("/healthz")).status_code == 405
        assert (await http.patch("/v1/jobs/zz-none/events")).status_code == 405


def test_after_warming_no_request_builds_a_routers_matching_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FastAPI builds an included router's matching state on the first request that reaches
    it (tens of ms); the gateway's lifespan warms every route so no first request waits."""
    app = create_app(Settings())
    warm_routes(app)
    built: list[object] = []
    real = _IncludedRouter._build_effective_context

    def counting(self: _IncludedRouter, route: object) -> object:
        built.append(route)
        return real(self, route)  # type: ignore[arg-type]

    monkeypatch.setattr(_IncludedRouter, "_build_effective_context", counting)
    checked = 0
    for context in iter_route_contexts(app.router.routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        for method in sorted(context.original_route.methods):
            scope = {"type": "http", "method": method, "path": _concrete(str(context.path))}
            assert any(r.matches(dict(scope))[0] == Match.FULL for r in app.router.routes)
            checked += 1
    assert checked > 40
    assert built == []
    # Unwarmed, the first request of a router builds it: the check above can fail.
    cold = create_app(Settings())
    scope = {"type": "http", "method": "POST", "path": "/v1/clusters"}
    assert any(r.matches(dict(scope))[0] == Match.FULL for r in cold.router.routes)
    assert built
