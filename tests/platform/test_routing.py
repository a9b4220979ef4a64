"""Domain routers decline paths outside their own at once (api.routing.DomainRouter): every
route is still found by its own router, and a path no route has is a 404, a route asked with
a method it does not have a 405, as FastAPI answers them."""

from __future__ import annotations

import re

import httpx
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Match

from openpitrix.api.routing import DomainRouter
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
