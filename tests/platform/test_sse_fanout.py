"""SSE fan-out: one bus subscription per gateway process feeds every local event stream; a
slow client is cut off without holding the others back; catch-up then live has no gap and no
duplicate at the seam."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import nats
import pytest

from openpitrix.bus.topology import event_subject
from openpitrix.db.engine import Database
from openpitrix.events.broadcast import Broadcaster
from openpitrix.events.publisher import emit_event
from openpitrix.events.schemas import EventType
from openpitrix.iam.schemas import Role
from openpitrix.settings import HttpSettings
from tests.conftest import LiveServer, make_settings, unique
from tests.helpers import read_sse
from tests.support.auth import bearer, create_account, mint_token


@pytest.fixture
async def gateway(
    request: pytest.FixtureRequest, database_url: str, nats_url: str, tmp_path: Path
) -> AsyncIterator[LiveServer]:
    # A small client buffer where a test wants a client to fall behind soon.
    buffer = 8 if "slow_client" in request.node.name else 1000
    settings = make_settings(
        database_url,
        nats_url,
        tmp_path / "data",
        http=HttpSettings(sse_client_buffer=buffer, sse_streams_per_caller=200),
    )
    async with LiveServer(settings, run_workers=False) as live:
        yield live


@pytest.fixture
async def admin(gateway: LiveServer, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    user = await create_account(database_url, Role.ADMIN)
    headers = bearer(mint_token(user, Role.ADMIN))
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60, headers=headers) as http:
        yield http


async def _emit(database_url: str, resource_id: str, count: int, pad: int = 0) -> None:
    """`count` events of one resource through the outbox (the gateway's relay publishes)."""
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            for i in range(count):
                emit_event(
                    session,
                    type=EventType.TASK_PROGRESS,
                    owner="usr-fanout",
                    owner_path=":usr-fanout",
                    resource_kind="repo",
                    resource_id=resource_id,
                    message=f"event-{i}",
                    data={"pad": "x" * pad} if pad else None,
                )
    finally:
        await db.dispose()


async def _started(stack: AsyncExitStack, http: httpx.AsyncClient, path: str) -> None:
    resp = await stack.enter_async_context(http.stream("GET", path))
    assert resp.status_code == 200
    lines = resp.aiter_lines()
    stack.push_async_callback(lines.aclose)  # type: ignore[attr-defined]
    assert await anext(lines) == "retry: 2000"


async def test_many_watchers_share_one_bus_subscription(
    gateway: LiveServer, admin: httpx.AsyncClient, nats_url: str
) -> None:
    broadcaster: Broadcaster = gateway.app.state.broadcaster
    stream = gateway.settings.bus.events_stream
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        before = (await js.stream_info(stream)).state.consumer_count
        async with AsyncExitStack() as held:
            await asyncio.gather(*(_started(held, admin, "/v1/events") for _ in range(50)))
            assert broadcaster.listeners() == 50
            during = (await js.stream_info(stream)).state.consumer_count
            # Ephemeral consumers of earlier tests may expire meanwhile, never one more.
            assert during <= before

        async def all_left() -> None:  # each stream leaves once the server sees it closed
            while broadcaster.listeners():
                await asyncio.sleep(0.02)

        await asyncio.wait_for(all_left(), 30)
    finally:
        await nc.close()


async def test_a_slow_client_is_cut_off_and_the_fast_one_gets_every_event(
    gateway: LiveServer, admin: httpx.AsyncClient, database_url: str
) -> None:
    resource = unique()
    path = f"/v1/events?resource_kind=repo&resource_id={resource}"
    count, pad = 120, 60_000  # ~7 MB: more than loopback buffers hold for a client not reading

    # The slow client: a socket with a small receive window that reads nothing until the end.
    host, port = gateway.url.removeprefix("http://").split(":")
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(slow, (host, int(port)))
    token = admin.headers["Authorization"]
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n\r\n".encode()
    await loop.sock_sendall(slow, request)
    head = b""
    while b"retry: 2000" not in head:
        head += await loop.sock_recv(slow, 4096)
    assert b" 200 " in head.split(b"\r\n", 1)[0]

    fast = asyncio.create_task(read_sse(admin, path, max_events=count, timeout=60))
    broadcaster: Broadcaster = gateway.app.state.broadcaster

    async def both_listening() -> None:
        while broadcaster.listeners() < 2:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(both_listening(), 30)
    await _emit(database_url, resource, count, pad=pad)
    frames = await fast
    assert [f["data"]["message"] for f in frames] == [f"event-{i}" for i in range(count)]

    # The slow client was dropped: what it has is a prefix of the events, then the end.
    received = b""
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    while chunk := await asyncio.wait_for(loop.sock_recv(slow, 1 << 16), 30):
        received += chunk
    slow.close()
    ids = [int(line[4:]) for line in received.split(b"\n") if line.startswith(b"id: ")]
    assert len(ids) < count
    assert ids == [f["id"] for f in frames[: len(ids)]]
    # It resumes with Last-Event-ID and gets the rest, once each.
    last = ids[-1] if ids else frames[0]["id"] - 1
    rest = await read_sse(admin, path, last_event_id=last, max_events=count - len(ids))
    assert [f["id"] for f in rest] == [f["id"] for f in frames[len(ids) :]]


async def test_events_published_during_a_replay_appear_once_in_order(
    gateway: LiveServer, admin: httpx.AsyncClient, nats_url: str
) -> None:
    resource = unique()
    subject = event_subject("usr-seam", "repo", resource, None)
    stream = gateway.settings.bus.events_stream
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()

        async def publish(start: int, count: int) -> None:
            for i in range(start, start + count):
                data = b'{"type":"task.progress","message":"e-%d"}' % i
                await js.publish(subject, data, stream=stream)

        history, during = 1500, 300
        await publish(0, history)
        path = f"/v1/events?resource_kind=repo&resource_id={resource}&after=0"
        frames: list[bytes] = []
        async with admin.stream("GET", path) as resp:
            assert resp.status_code == 200
            lines = resp.aiter_lines()
            assert await anext(lines) == "retry: 2000"
            # Joined the live feed, replay under way: publish more now.
            publishing = asyncio.create_task(publish(history, during))
            async for line in lines:
                if line.startswith("data: "):
                    frames.append(line.encode())
                    if len(frames) == history + during:
                        break
            await publishing
        messages = [f.split(b'"message":"e-')[1].split(b'"')[0] for f in frames]
        assert messages == [str(i).encode() for i in range(history + during)]
    finally:
        await nc.close()
