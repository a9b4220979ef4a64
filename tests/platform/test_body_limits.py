"""Request bodies: over the limit is a 413 before the body is read, and a caller without a
token is told 401 without the gateway taking in its body at all."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute, iter_route_contexts

from openpitrix.api.errors import install_error_handlers
from openpitrix.api.limits import UPLOAD, BodyLimitMiddleware
from openpitrix.iam.deps import AuthenticatedRoute
from openpitrix.settings import HttpSettings, Settings
from tests.conftest import LiveServer, make_settings
from tests.helpers import assert_error

MiB = 1024 * 1024
HUGE = 200 * MiB
LIMIT = 1 * MiB  # the default JSON limit


@pytest.fixture
def gateway_settings(database_url: str, nats_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, nats_url, tmp_path / "data", relay_enabled=False)


@pytest.fixture
async def gateway(gateway_settings: Settings) -> AsyncIterator[LiveServer]:
    async with LiveServer(gateway_settings, run_workers=False) as live:
        yield live


async def _chunks(total: int, size: int = MiB) -> AsyncIterator[bytes]:
    chunk = b"x" * size  # one buffer sent again and again: the client itself stays small
    sent = 0
    while sent < total:
        piece = chunk[: min(size, total - sent)]
        sent += len(piece)
        yield piece


@contextmanager
def peak_rss_growth() -> Iterator[list[int]]:
    """Yields a list that holds, on exit, how far this process's RSS rose above its level at
    entry (sampled every few milliseconds: memory freed at the end still shows)."""
    proc = psutil.Process()
    start = proc.memory_info().rss
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], proc.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    growth = [0]
    try:
        yield growth
    finally:
        done.set()
        sampler.join()
        growth[0] = max(peak[0], proc.memory_info().rss) - start


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_200_mb_body_is_refused_without_the_server_holding_it(
    gateway: LiveServer, admin_headers: dict[str, str], declared: bool
) -> None:
    # The server runs in this process, so this process's RSS is the server's.
    length = {"Content-Length": str(HUGE)} if declared else {}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=120) as http:
        with peak_rss_growth() as anonymous_growth:
            anonymous = await http.post(
                "/v1/repos",
                content=_chunks(HUGE),
                headers={"Content-Type": "application/json", **length},
            )
        with peak_rss_growth() as authenticated_growth:
            authenticated = await http.post(
                "/v1/repos",
                content=_chunks(HUGE),
                headers={"Content-Type": "application/json", **length, **admin_headers},
            )
    assert_error(anonymous, 401, "unauthorized")
    body = assert_error(authenticated, 413, "payload_too_large")
    assert body["details"] == {"max_bytes": LIMIT}
    assert anonymous_growth[0] < 50 * MiB, anonymous_growth[0]
    assert authenticated_growth[0] < 50 * MiB, authenticated_growth[0]


async def test_a_body_just_over_the_limit_is_413_and_one_at_the_limit_is_parsed(
    gateway: LiveServer, admin_headers: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers=admin_headers) as http:
        over = await http.post(
            "/v1/repos",
            content=b" " * (LIMIT + 1),
            headers={"Content-Type": "application/json"},
        )
        at = await http.post(
            "/v1/repos",
            content=b"{}" + b" " * (LIMIT - 2),
            headers={"Content-Type": "application/json"},
        )
    assert_error(over, 413, "payload_too_large")
    assert_error(at, 422, "validation_error")  # read and parsed: only its fields are missing


async def test_the_limit_is_a_setting(
    database_url: str, nats_url: str, tmp_path: Path, admin_headers: dict[str, str]
) -> None:
    settings = make_settings(
        database_url,
        nats_url,
        tmp_path / "data",
        relay_enabled=False,
        http=HttpSettings(max_body_bytes=100),
    )
    async with (
        LiveServer(settings, run_workers=False) as live,
        httpx.AsyncClient(base_url=live.url, timeout=30, headers=admin_headers) as http,
    ):
        resp = await http.post("/v1/repos", json={"name": "x" * 200})
    body = assert_error(resp, 413, "payload_too_large")
    assert body["details"] == {"max_bytes": 100}


def _protected_body_routes(app: FastAPI) -> list[tuple[str, str]]:
    out = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or route.body_field is None:
            continue
        if str(context.path).startswith("/v1/oauth2/"):
            continue  # public: they authenticate with what the body carries
        for method in sorted(route.methods):
            path = "/".join(
                ("1" if p == "{revision}" else "zz-none") if p.startswith("{") else p
                for p in str(context.path).split("/")
            )
            out.append((method, path))
    return out


async def test_every_protected_route_with_a_body_checks_the_token_before_reading_it(
    gateway: LiveServer, admin_headers: dict[str, str]
) -> None:
    # A body one byte over the limit: a route that read it before checking the token would
    # answer 413; one that checks first answers 401 and never reads it.
    routes = _protected_body_routes(gateway.app)
    assert len(routes) > 10, routes
    over = b" " * (LIMIT + 1)
    wrong = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        for method, path in routes:
            headers = {"Content-Type": "application/json"}
            anonymous = await http.request(method, path, content=over, headers=headers)
            admin = await http.request(
                method, path, content=over, headers={**headers, **admin_headers}
            )
            if (anonymous.status_code, admin.status_code) != (401, 413):
                wrong.append((method, path, anonymous.status_code, admin.status_code))
    assert not wrong, wrong


def test_every_route_with_a_token_and_a_body_is_an_authenticated_route(
    gateway_settings: Settings,
) -> None:
    from openpitrix.gateway import create_app

    app = create_app(gateway_settings)
    routes = [
        c.original_route
        for c in iter_route_contexts(app.routes)
        if isinstance(c.original_route, APIRoute)
    ]
    assert routes
    plain = [
        r.path
        for r in routes
        if r.body_field is not None
        and not r.path.startswith("/v1/oauth2/")
        and not isinstance(r, AuthenticatedRoute)
    ]
    assert not plain, plain


async def _echo_length(request: Request) -> dict[str, int]:
    return {"bytes": len(await request.body())}


async def test_an_upload_route_takes_the_upload_limit_and_others_the_json_one() -> None:
    app = FastAPI()
    app.add_api_route("/upload", _echo_length, methods=["POST"], openapi_extra=UPLOAD)
    app.add_api_route("/json", _echo_length, methods=["POST"])
    install_error_handlers(app)
    limited = BodyLimitMiddleware(app, max_body_bytes=10, max_upload_bytes=1000)
    transport = httpx.ASGITransport(app=limited)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        upload = await http.post("/upload", content=b"u" * 500)
        too_big_upload = await http.post("/upload", content=_chunks(1001, size=100))
        json_route = await http.post("/json", content=b"j" * 500)
    assert upload.json() == {"bytes": 500}
    assert too_big_upload.status_code == 413
    assert too_big_upload.json()["error"] == "payload_too_large"
    assert json_route.status_code == 413
    assert json_route.json()["details"] == {"max_bytes": 10}
