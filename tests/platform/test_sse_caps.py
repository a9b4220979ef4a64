"""Open event streams are capped per caller and per process: beyond a cap, 429 with
`Retry-After` before any stream starts; a closed stream gives its place back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from openpitrix.events.sse import StreamCounter
from openpitrix.iam.schemas import Role
from openpitrix.settings import HttpSettings
from tests.conftest import LiveServer, make_settings
from tests.helpers import assert_error
from tests.support.auth import bearer, create_account, mint_token


@pytest.fixture
async def gateway(database_url: str, nats_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    settings = make_settings(
        database_url,
        nats_url,
        tmp_path / "data",
        relay_enabled=False,
        http=HttpSettings(
            sse_streams_per_caller=2, sse_streams_per_process=3, sse_retry_after_seconds=7
        ),
    )
    async with LiveServer(settings, run_workers=False) as live:
        yield live


async def _open(stack: AsyncExitStack, http: httpx.AsyncClient, path: str) -> httpx.Response:
    resp = await stack.enter_async_context(http.stream("GET", path))
    if resp.status_code == 200:
        lines = resp.aiter_lines()
        # Held by the stack for the stream's life: a dropped line iterator closes its response.
        stack.push_async_callback(lines.aclose)  # type: ignore[attr-defined]
        assert await anext(lines) == "retry: 2000"  # the stream really started
    else:
        await resp.aread()
    return resp


async def _wait_open_streams(counter: StreamCounter, caller: str, want: int) -> None:
    async def settled() -> None:
        while counter.open_streams(caller) != want:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(settled(), 15)


async def test_streams_beyond_the_per_caller_and_per_process_caps_are_429(
    gateway: LiveServer, database_url: str
) -> None:
    alice = await create_account(database_url, Role.ADMIN)
    bob = await create_account(database_url, Role.ADMIN)
    counter: StreamCounter = gateway.app.state.sse_streams
    async with (
        httpx.AsyncClient(
            base_url=gateway.url, timeout=30, headers=bearer(mint_token(alice, Role.ADMIN))
        ) as as_alice,
        httpx.AsyncClient(
            base_url=gateway.url, timeout=30, headers=bearer(mint_token(bob, Role.ADMIN))
        ) as as_bob,
        AsyncExitStack() as held,
    ):
        first, second = await asyncio.gather(
            _open(held, as_alice, "/v1/events"), _open(held, as_alice, "/v1/events")
        )
        assert (first.status_code, second.status_code) == (200, 200)
        assert counter.open_streams(alice) == 2

        # Alice's third stream, on either stream route, is over her cap.
        for path in ("/v1/events", "/v1/jobs/zz-none/events"):
            refused = await _open(held, as_alice, path)
            body = assert_error(refused, 429, "too_many_streams")
            assert refused.headers["retry-after"] == "7"
            assert body["message"]

        # Bob has his own cap, but the process holds at most three.
        assert (await _open(held, as_bob, "/v1/events")).status_code == 200
        over_process = await _open(held, as_bob, "/v1/events")
        assert_error(over_process, 429, "too_many_streams")
        assert over_process.headers["retry-after"] == "7"
        assert counter.open_streams() == 3

        # Alice closes one: its place is free again once the server sees her leave.
        await first.aclose()
        await _wait_open_streams(counter, alice, 1)
        assert (await _open(held, as_alice, "/v1/events")).status_code == 200

    # Every client gone: nothing stays counted.
    await _wait_open_streams(counter, alice, 0)
    await _wait_open_streams(counter, bob, 0)
    assert counter.open_streams() == 0


async def test_a_refused_or_failed_stream_request_holds_no_place(
    gateway: LiveServer, database_url: str
) -> None:
    alice = await create_account(database_url, Role.ADMIN)
    counter: StreamCounter = gateway.app.state.sse_streams
    async with httpx.AsyncClient(
        base_url=gateway.url, timeout=30, headers=bearer(mint_token(alice, Role.ADMIN))
    ) as http:
        for _ in range(3):  # more than the cap: each 404 gave its place back
            assert (await http.get("/v1/jobs/zz-none/events")).status_code == 404
    assert counter.open_streams(alice) == 0
