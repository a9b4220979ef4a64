"""The authorization matrix: every route x every role, and every kind of bad credential.

Generated from the app's route table, so a new route without a rule fails here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from openpitrix.gateway import create_app
from openpitrix.iam.access import PERMISSIONS, Op, scope_of
from openpitrix.iam.deps import Authorize
from openpitrix.iam.schemas import Role
from openpitrix.settings import Settings
from tests.conftest import LiveServer
from tests.support.auth import bearer, create_account, mint_token

# Routes anyone may call: probes, the API description, and the OAuth2 endpoints themselves.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/v1/oauth2/token"),
    ("POST", "/v1/oauth2/revoke"),
}
# Served by FastAPI itself (not APIRoutes): they must stay reachable without a token.
DOCS = ["/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc"]

MISSING_ID = "zz-not-there"
# Path parameters that are not ids take one of their allowed values.
PATH_SAMPLES = {"{action}": "stop", "{revision}": "1"}


def _authorizers(dependant: Dependant) -> Iterator[Authorize]:
    for dep in dependant.dependencies:
        if isinstance(dep.call, Authorize):
            yield dep.call
        yield from _authorizers(dep)


def _needs_body(route: APIRoute) -> bool:
    """Whether the route's body has required fields (so an empty object is a 422)."""
    field = route.body_field
    if field is None:
        return False
    model = getattr(field.field_info, "annotation", None)
    fields = getattr(model, "model_fields", {})
    return any(f.is_required() for f in fields.values())


BODY_REQUIRED: set[tuple[str, str]] = set()


def route_table() -> list[tuple[str, str, Op | None]]:
    """(method, path, operation) of every API route; operation None for public routes."""
    table = []
    # iter_route_contexts flattens included routers (which FastAPI resolves lazily) into the
    # routes as served, with their full paths.
    for context in iter_route_contexts(create_app(Settings()).routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        ops = {a.op for a in _authorizers(route.dependant)}
        assert len(ops) <= 1, f"{context.path} names several operations: {ops}"
        for method in sorted(route.methods):
            table.append((method, str(context.path), next(iter(ops), None)))
            if _needs_body(route):
                BODY_REQUIRED.add((method, str(context.path)))
    assert len(table) > 20, table  # the walk itself works
    return table


ROUTES = route_table()


def test_every_route_has_a_rule_or_is_public() -> None:
    unruled = [(m, p) for m, p, op in ROUTES if op is None and (m, p) not in PUBLIC]
    assert not unruled, f"routes without an authorization rule: {unruled}"
    ruled_public = [(m, p) for m, p, op in ROUTES if op is not None and (m, p) in PUBLIC]
    assert not ruled_public, f"public routes must not need a token: {ruled_public}"
    assert {(m, p) for m, p, _ in ROUTES} >= PUBLIC


def test_every_role_has_a_rule_for_every_operation_it_is_meant_to_have() -> None:
    # The table is the policy: admin holds everything, and every role may act as itself.
    assert set(PERMISSIONS) == set(Role)
    assert all(scope_of(Role.ADMIN, op) == "all" for op in Op)
    assert all(scope_of(role, Op.SELF) is not None for role in Role)
    assert all(scope_of(role, Op.USER_ADMIN) is None for role in Role if role != Role.ADMIN)
    assert scope_of(Role.USER, Op.REPO_WRITE) is None


def _concrete(path: str) -> str:
    out = []
    for part in path.split("/"):
        out.append(PATH_SAMPLES.get(part, MISSING_ID) if part.startswith("{") else part)
    return "/".join(out)


def expected_when_allowed(method: str, path: str) -> int:
    """What a caller allowed to do the operation gets with an empty request: 422 for a body
    that lacks required fields, 404 for a row that does not exist, 200 for a list."""
    if (method, path) in BODY_REQUIRED:
        return 422
    if "{" in path:
        return 404
    if method == "GET":
        return 200
    return 422


async def call(http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> int:
    url = _concrete(path)
    kwargs: dict[str, Any] = {"headers": headers}
    if method in {"POST", "PATCH", "PUT"}:
        kwargs["json"] = {}
    # SSE routes answer with headers first and then stream forever: the status is enough.
    async with http.stream(method, url, **kwargs) as resp:
        return resp.status_code


def _mismatches(
    results: list[tuple[str, str, int, int]],
) -> list[str]:
    return [f"{m} {p}: got {got}, want {want}" for m, p, got, want in results if got != want]


@pytest.mark.parametrize("role", list(Role))
async def test_each_role_gets_exactly_what_the_permission_table_grants(
    role: Role, server: LiveServer, database_url: str
) -> None:
    headers = bearer(mint_token(await create_account(database_url, role), role))
    results = []
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for method, path, op in ROUTES:
            if op is None:
                continue
            want = 403 if scope_of(role, op) is None else expected_when_allowed(method, path)
            results.append((method, path, await call(http, method, path, headers), want))
    assert not _mismatches(results), "\n".join(_mismatches(results))


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize("credential", ["none", "malformed", "expired", "tampered", "deleted"])
async def test_bad_credentials_get_401_on_every_protected_route(
    credential: str, server: LiveServer, database_url: str, admin_headers: dict[str, str]
) -> None:
    user_id = await create_account(database_url, Role.DEVELOPER)
    good = mint_token(user_id, Role.DEVELOPER)
    headers = {
        "none": {},
        "malformed": {"Authorization": "Bearer not-a-jwt"},
        "expired": bearer(mint_token(user_id, Role.DEVELOPER, ttl_seconds=-60)),
        "tampered": bearer(_tampered(good)),
        "deleted": bearer(good),
    }[credential]
    results = []
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        if credential == "deleted":
            gone = await http.delete(f"/v1/users/{user_id}", headers=admin_headers)
            assert gone.status_code == 204
        for method, path, op in ROUTES:
            if op is None:
                continue
            results.append((method, path, await call(http, method, path, headers), 401))
    assert not _mismatches(results), "\n".join(_mismatches(results))


async def test_public_routes_and_docs_need_no_token(anon: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/readyz", *DOCS):
        resp = await anon.get(path)
        assert resp.status_code == 200, (path, resp.status_code)
    token = await anon.post("/v1/oauth2/token", data={"grant_type": "password"})
    assert token.status_code == 400  # reached the endpoint: an OAuth2 error, not a 401
    revoke = await anon.post("/v1/oauth2/revoke", data={"token": "unknown"})
    assert revoke.status_code == 200
