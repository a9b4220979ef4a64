"""Routes whose dependencies take only the request skip FastAPI's general dependency solver
(api.handlers.LeanRoute) and answer exactly as FastAPI would: the same dependencies in the
same order, each once per request unless it opts out of the cache, the app's and the router's
dependencies included, path parameters and the request passed, dependency overrides honoured.
Routes that need more keep FastAPI's handler."""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi import routing as fastapi_routing
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel

from openpitrix.api.handlers import LeanRoute, lean_plan
from openpitrix.gateway import create_app
from openpitrix.settings import Settings

calls: list[str] = []


async def app_wide(request: Request) -> None:
    calls.append("app")
    if request.query_params.get("refuse"):
        raise PermissionError("refused by the app's dependency")


async def router_wide(request: Request) -> None:
    calls.append("router")


async def counted(request: Request) -> str:
    calls.append("counted")
    return f"counted:{request.url.path}"


async def uncached(request: Request) -> int:
    calls.append("uncached")
    return len(calls)


class Item(BaseModel):
    name: str


def _app() -> FastAPI:
    app = FastAPI(dependencies=[Depends(app_wide)])

    @app.exception_handler(PermissionError)
    async def refused(request: Request, exc: PermissionError) -> Response:
        return JSONResponse({"refused": str(exc)}, status_code=403)

    router = APIRouter(route_class=LeanRoute, dependencies=[Depends(router_wide)])

    @router.get("/items/{item_id}")
    async def lean_item(
        item_id: str,
        request: Request,
        first: Annotated[str, Depends(counted)],
        again: Annotated[str, Depends(counted)],
        fresh: Annotated[int, Depends(uncached, use_cache=False)],
        fresh_again: Annotated[int, Depends(uncached, use_cache=False)],
    ) -> Response:
        return JSONResponse(
            {
                "item_id": item_id,
                "method": request.method,
                "first": first,
                "again": again,
                "fresh": [fresh, fresh_again],
            }
        )

    @router.get("/models/{item_id}")
    async def model_item(item_id: str, first: Annotated[str, Depends(counted)]) -> Item:
        return Item(name=f"{item_id}/{first}")

    app.include_router(router)
    return app


@pytest.fixture
def solver_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the requests FastAPI's general solver handles."""
    seen: list[int] = []
    solve = fastapi_routing.solve_dependencies

    async def counting(**kwargs: object) -> object:
        seen.append(1)
        return await solve(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fastapi_routing, "solve_dependencies", counting)
    return seen


async def _get(app: FastAPI, path: str) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        return await client.get(path)


async def test_a_lean_route_solves_what_fastapi_would_without_its_solver(
    solver_calls: list[int],
) -> None:
    app = _app()
    calls.clear()
    resp = await _get(app, "/items/a-1")
    assert resp.status_code == 200
    assert resp.json() == {
        "item_id": "a-1",
        "method": "GET",
        "first": "counted:/items/a-1",
        "again": "counted:/items/a-1",
        "fresh": [4, 5],
    }
    # In order: the app's, the router's, then the route's; the cached one once.
    assert calls == ["app", "router", "counted", "uncached", "uncached"]
    assert solver_calls == []


async def test_a_dependency_that_raises_answers_through_the_exception_handlers(
    solver_calls: list[int],
) -> None:
    calls.clear()
    resp = await _get(_app(), "/items/a-1?refuse=1")
    assert resp.status_code == 403
    assert resp.json() == {"refused": "refused by the app's dependency"}
    assert calls == ["app"]
    assert solver_calls == []


async def test_overrides_and_routes_with_a_response_model_use_fastapis_handler(
    solver_calls: list[int],
) -> None:
    app = _app()

    async def fake(request: Request) -> str:
        return "overridden"

    app.dependency_overrides[counted] = fake
    resp = await _get(app, "/items/b")
    assert resp.json()["first"] == "overridden"
    assert solver_calls == [1]

    app.dependency_overrides.clear()
    resp = await _get(app, "/models/c")
    assert resp.json() == {"name": "c/counted:/models/c"}
    assert solver_calls == [1, 1]
    contexts = {str(c.path): c for c in iter_route_contexts(app.router.routes)}
    assert lean_plan(contexts["/models/{item_id}"]) is None
    assert lean_plan(contexts["/items/{item_id}"]) is not None


def test_the_gateways_hot_lists_are_lean() -> None:
    app = create_app(Settings())
    lean = {
        (method, str(ctx.path))
        for ctx in iter_route_contexts(app.router.routes)
        if lean_plan(ctx) is not None
        for method in ctx.methods or ()
    }
    assert {
        ("GET", "/v1/apps"),
        ("GET", "/v1/apps/{app_id}/versions"),
        ("GET", "/v1/jobs"),
    } <= lean
