"""An outbox row that can never be published (over the NATS payload limit) is parked with its
error and no longer holds back later commands and events; a transient failure keeps the rows of
its key unsent, in order, for the next attempt, and other keys go on."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NoStreamResponseError
from sqlalchemy import delete, select
from sqlmodel import col

from openpitrix.bus.topology import ensure_topology, event_subject
from openpitrix.db.engine import Database
from openpitrix.outbox.models import OutboxMessage
from openpitrix.outbox.relay import OutboxRelay
from openpitrix.outbox.writer import enqueue
from openpitrix.settings import Settings
from tests.conftest import LiveServer

# The test nats-server keeps its default max_payload of 1 MB.
OVERSIZED = {"blob": "x" * 1_100_000}


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_url)
    yield nc
    await nc.close()


@pytest.fixture
async def js(nc: Client, settings: Settings) -> JetStreamContext:
    js = nc.jetstream()
    await ensure_topology(js, settings.bus)
    return js


async def _row(db: Database, msg_id: str) -> OutboxMessage:
    async with db.read_session() as session:
        return (
            await session.execute(select(OutboxMessage).where(col(OutboxMessage.msg_id) == msg_id))
        ).scalar_one()


async def _parked(db: Database, msg_id: str, timeout: float = 15.0) -> OutboxMessage:
    async with asyncio.timeout(timeout):
        while (row := await _row(db, msg_id)).parked_at is None:
            await asyncio.sleep(0.05)
    return row


async def test_an_oversized_message_is_parked_and_later_ones_still_go_out(
    server: LiveServer,
    client: httpx.AsyncClient,
    db: Database,
    js: JetStreamContext,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="openpitrix.outbox.relay")
    subject = event_subject("tester", "repo", f"repo-{uuid.uuid4().hex[:8]}", None)
    async with db.transaction() as session:
        big = enqueue(session, subject, OVERSIZED)
        small = enqueue(session, subject, {"n": 1})

    # The server's relay publishes the message behind the oversized one.
    sub = await js.subscribe(subject, stream=settings.bus.events_stream, ordered_consumer=True)
    got = await sub.next_msg(timeout=15)
    await sub.unsubscribe()
    assert got.headers is not None and got.headers["Nats-Msg-Id"] == small
    parked = await _parked(db, big)
    assert parked.sent_at is None
    assert parked.error is not None and "maximum payload" in parked.error
    assert (await _row(db, small)).sent_at is not None

    # Parked rows are skipped from then on: the error is logged once, not on every pass.
    relay = server.app.state.platform.relay
    assert relay is not None
    await relay.publish_pending()
    logged = [r for r in caplog.records if big in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert logged[0].levelno == logging.ERROR
    assert subject in logged[0].getMessage() and "maximum payload" in logged[0].getMessage()

    # Operators see it on the readiness detail; the plain probe keeps its shape.
    plain = await client.get("/readyz")
    assert plain.status_code == 200 and "outbox" not in plain.json()
    detail = await client.get("/readyz", params={"detail": "true"})
    assert detail.status_code == 200
    outbox = detail.json()["outbox"]
    assert outbox["parked"] >= 1
    entry = next(m for m in outbox["latest"] if m["msg_id"] == big)
    # The probe needs no token: the owner's id in the subject is hidden; the log has it whole.
    assert entry["subject"] == subject.replace(".tester.", ".*.")
    assert "tester" not in detail.text
    assert "maximum payload" in entry["error"]


async def test_a_transient_failure_keeps_its_key_unsent_and_other_keys_go_out(
    db: Database, js: JetStreamContext, settings: Settings, nc: Client
) -> None:
    # No stream listens on this subject yet: "no responders" is an outage, not a verdict.
    stray = f"unrouted.{uuid.uuid4().hex[:8]}"
    subject = event_subject("tester", "repo", f"repo-{uuid.uuid4().hex[:8]}", None)
    async with db.transaction() as session:
        first = enqueue(session, stray, {"n": 0})
        stray_later = enqueue(session, stray, {"n": 1})
        other_key = enqueue(session, subject, {"n": 1})
    relay = OutboxRelay(db, nc, poll_seconds=0.1)
    try:
        with pytest.raises(NoStreamResponseError):
            await relay.publish_pending()
        # The failed row and the later one of its key wait, neither parked nor sent.
        for msg_id in (first, stray_later):
            row = await _row(db, msg_id)
            assert row.sent_at is None and row.parked_at is None
        # Another key does not wait behind that outage.
        assert (await _row(db, other_key)).sent_at is not None
    finally:
        async with db.transaction() as session:
            await session.execute(
                delete(OutboxMessage).where(col(OutboxMessage.msg_id).in_([first, stray_later]))
            )
    while await relay.publish_pending():
        pass


async def test_a_message_over_the_limit_only_with_its_headers_is_parked_too(
    server: LiveServer, client: httpx.AsyncClient, db: Database, js: JetStreamContext
) -> None:
    # The client checks the payload alone; the server would close the connection on this one,
    # and the relay would retry it forever.
    limit = server.app.state.platform.nc.max_payload
    subject = event_subject("tester", "repo", f"repo-{uuid.uuid4().hex[:8]}", None)
    async with db.transaction() as session:
        edge = enqueue(session, subject, b"x" * (limit - 8))
        after = enqueue(session, subject, {"n": 2})
    parked = await _parked(db, edge)
    assert parked.error is not None and "maximum payload" in parked.error
    async with asyncio.timeout(15):
        while (await _row(db, after)).sent_at is None:
            await asyncio.sleep(0.05)
    assert (await client.get("/readyz")).status_code == 200  # the connection stayed up


async def test_a_message_its_stream_refuses_is_parked_and_its_key_goes_on(
    db: Database, js: JetStreamContext, nc: Client
) -> None:
    # The stream, not the client, says no (its max_msg_size): the error arrives in the ack.
    token = uuid.uuid4().hex[:8]
    subject, stream = f"parktest.{token}", f"PARKTEST_{token}"
    await js.add_stream(StreamConfig(name=stream, subjects=[subject], max_msg_size=256))
    try:
        async with db.transaction() as session:
            first = enqueue(session, subject, {"n": 0}, key="k")
            refused = enqueue(session, subject, {"blob": "x" * 1000}, key="k")
            after = enqueue(session, subject, {"n": 2}, key="k")
        relay = OutboxRelay(db, nc, poll_seconds=0.1)
        while await relay.publish_pending():
            pass
        parked = await _row(db, refused)
        assert parked.parked_at is not None and parked.sent_at is None
        assert parked.error is not None and "10054" in parked.error
        assert (await _row(db, first)).sent_at is not None
        assert (await _row(db, after)).sent_at is not None
        sub = await js.subscribe(subject, stream=stream, ordered_consumer=True)
        got = [await sub.next_msg(timeout=10) for _ in range(2)]
        await sub.unsubscribe()
        assert [(m.headers or {})["Nats-Msg-Id"] for m in got] == [first, after]
        assert (await js.stream_info(stream)).state.messages == 2
    finally:
        await js.delete_stream(stream)
