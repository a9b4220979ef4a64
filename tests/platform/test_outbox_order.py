"""The outbox relay keeps each key's order (a job's commands, a resource's events) while it
publishes keys side by side: with two relays at once, after a failed publish, after a relay
dies mid-batch; every message reaches the stream exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import uuid
from collections.abc import AsyncIterator

import nats
import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NoStreamResponseError
from sqlalchemy import select
from sqlmodel import col

from openpitrix.bus.topology import JOB_MANAGER, command_subject, ensure_topology, event_subject
from openpitrix.db.engine import Database
from openpitrix.events.publisher import emit_event
from openpitrix.events.schemas import EventType
from openpitrix.jobs.commands import JobCommand
from openpitrix.outbox.models import OutboxMessage
from openpitrix.outbox.relay import SHARDS, OutboxRelay
from openpitrix.outbox.writer import enqueue
from openpitrix.settings import Settings
from tests.conftest import PG_ENV

pytestmark = pytest.mark.timeout(120)


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


async def _rows(db: Database, msg_ids: list[str]) -> dict[str, OutboxMessage]:
    async with db.read_session() as session:
        rows = await session.execute(
            select(OutboxMessage).where(col(OutboxMessage.msg_id).in_(msg_ids))
        )
        return {r.msg_id: r for r in rows.scalars()}


async def _write_keys(db: Database, owner: str, keys: int, per_key: int) -> list[str]:
    """`keys` resources x `per_key` events, interleaved at random, each key's in its order."""
    order = [k for k in range(keys) for _ in range(per_key)]
    random.Random(3).shuffle(order)
    step = [0] * keys
    ids = []
    async with db.transaction() as session:
        for k in order:
            subject = event_subject(owner, "cluster", f"cl-{k}", f"job-{k}")
            ids.append(enqueue(session, subject, {"k": k, "n": step[k]}))
            step[k] += 1
    return ids


async def _read_stream(
    js: JetStreamContext, settings: Settings, owner: str, count: int
) -> list[tuple[str, dict[str, int]]]:
    """The first `count` messages of `owner`'s events, in stream order (msg id, body)."""
    sub = await js.subscribe(
        f"op.evt.{owner}.>", stream=settings.bus.events_stream, ordered_consumer=True
    )
    try:
        got = []
        for _ in range(count):
            msg = await sub.next_msg(timeout=30)
            got.append(((msg.headers or {})["Nats-Msg-Id"], orjson.loads(msg.data)))
        return got
    finally:
        await sub.unsubscribe()


def _assert_each_key_in_order_once(got: list[tuple[str, dict[str, int]]], per_key: int) -> None:
    seen: dict[int, list[int]] = {}
    for _, body in got:
        seen.setdefault(body["k"], []).append(body["n"])
    assert seen, "nothing was published"
    for k, ns in seen.items():
        assert ns == list(range(per_key)), f"key {k} arrived as {ns}"
    assert len({msg_id for msg_id, _ in got}) == len(got)


def test_the_key_is_the_event_resource_or_the_command_job(db: Database) -> None:
    from openpitrix.outbox.keys import message_key

    assert message_key(event_subject("u1", "cluster", "cl-1", "job-9"), b"{}") == "cluster.cl-1"
    assert message_key(event_subject("u1", "repo", "repo-1", None), b"{}") == "repo.repo-1"
    command = JobCommand(job_id="job-9").model_dump()
    assert message_key(command_subject(JOB_MANAGER, "advance"), command) == "job.job-9"
    assert message_key("other.subject", {"job_id": "job-9"}) == "other.subject"


async def test_writers_key_rows_without_being_told(db: Database) -> None:
    """The callers (events, job commands) pass no key: the writer derives it."""
    owner = f"u{uuid.uuid4().hex[:8]}"
    async with db.transaction() as session:
        event = emit_event(
            session,
            type=EventType.JOB_STATUS,
            owner=owner,
            owner_path=f":{owner}",
            resource_kind="cluster",
            resource_id="cl-7",
            job_id="job-7",
        )
        command = enqueue(
            session,
            command_subject(JOB_MANAGER, "advance"),
            JobCommand(job_id="job-7").model_dump(),
        )
    rows = await _rows(db, [event.id, command])
    assert rows[event.id].key == "cluster.cl-7"
    assert rows[command].key == "job.job-7"


async def test_a_failed_publish_mid_batch_holds_back_the_rest_of_its_key_only(
    db: Database, js: JetStreamContext, nc: Client
) -> None:
    token = uuid.uuid4().hex[:8]
    routed, unrouted = f"ordertest.{token}.a", f"ordertest.{token}.b"
    stream = f"ORDERTEST_{token}"
    await js.add_stream(StreamConfig(name=stream, subjects=[routed]))
    try:
        async with db.transaction() as session:
            ids = [
                enqueue(session, routed, {"n": 0}, key="k1"),
                enqueue(session, unrouted, {"n": 1}, key="k1"),  # no stream yet: fails
                enqueue(session, routed, {"n": 2}, key="k1"),  # must not overtake it
                enqueue(session, routed, {"n": 0}, key="k2"),
            ]
        relay = OutboxRelay(db, nc, poll_seconds=0.1)
        with pytest.raises(NoStreamResponseError):
            await relay.publish_pending()
        rows = await _rows(db, ids)
        assert rows[ids[0]].sent_at is not None and rows[ids[3]].sent_at is not None
        assert rows[ids[1]].sent_at is None and rows[ids[2]].sent_at is None
        info = await js.stream_info(stream)
        assert info.state.messages == 2  # k1's first and k2's: k1's third stayed back

        # The outage ends (the subject gets a stream): k1's rows go out, still in order.
        await js.update_stream(StreamConfig(name=stream, subjects=[routed, unrouted]))
        while await relay.publish_pending():
            pass
        sub = await js.subscribe(f"ordertest.{token}.>", stream=stream, ordered_consumer=True)
        got = [await sub.next_msg(timeout=10) for _ in range(4)]
        await sub.unsubscribe()
        order = [(m.headers or {})["Nats-Msg-Id"] for m in got]
        k1 = [i for i in order if i in ids[:3]]
        assert k1 == ids[:3]
        assert set(order) == set(ids)
    finally:
        await js.delete_stream(stream)


async def test_two_relays_at_once_keep_every_key_in_order_and_publish_each_once(
    database_url: str, js: JetStreamContext, settings: Settings, nc: Client
) -> None:
    """Two processes' relays (each its own engine) and a third writer, all at once."""
    writer, first_db, second_db = (Database(database_url) for _ in range(3))
    relays = [
        OutboxRelay(first_db, nc, poll_seconds=0.05, batch_size=64),
        OutboxRelay(second_db, nc, poll_seconds=0.05, batch_size=64),
    ]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    owner = f"u{uuid.uuid4().hex[:8]}"
    keys, per_key = 60, 20
    try:
        ids = await _write_keys(writer, owner, keys, per_key)
        got = await _read_stream(js, settings, owner, len(ids))
        _assert_each_key_in_order_once(got, per_key)
        assert {msg_id for msg_id, _ in got} == set(ids)
        async with asyncio.timeout(30):
            while any(r.sent_at is None for r in (await _rows(writer, ids)).values()):
                await asyncio.sleep(0.05)
    finally:
        for relay, task in zip(relays, tasks, strict=True):
            await relay.stop()
            task.cancel()
        for db in (writer, first_db, second_db):
            await db.dispose()


async def test_a_relay_dying_mid_batch_loses_nothing_and_keeps_the_order(
    db: Database, js: JetStreamContext, settings: Settings, nc: Client
) -> None:
    owner = f"u{uuid.uuid4().hex[:8]}"
    keys, per_key = 100, 20
    ids = await _write_keys(db, owner, keys, per_key)
    doomed = OutboxRelay(db, nc, poll_seconds=30.0, batch_size=len(ids))
    batch = asyncio.create_task(doomed.publish_pending())
    # Killed once the stream holds part of its batch (if it finished first, the next relay
    # just finds nothing left to do: the checks below hold either way).
    sub = await js.subscribe(
        f"op.evt.{owner}.>", stream=settings.bus.events_stream, ordered_consumer=True
    )
    await sub.next_msg(timeout=30)
    await sub.unsubscribe()
    batch.cancel()
    with contextlib.suppress(asyncio.CancelledError):  # it may have finished before the cancel
        await batch

    survivor = OutboxRelay(db, nc, poll_seconds=30.0)
    while await survivor.publish_pending():
        pass
    got = await _read_stream(js, settings, owner, len(ids))
    _assert_each_key_in_order_once(got, per_key)
    assert {msg_id for msg_id, _ in got} == set(ids)
    assert all(r.sent_at is not None for r in (await _rows(db, ids)).values())


@pytest.mark.skipif(
    not os.environ.get(PG_ENV), reason="PostgreSQL only: SQLite relays take no shard locks"
)
async def test_relays_on_postgresql_claim_disjoint_fair_shares_of_the_shards(
    database_url: str, js: JetStreamContext, nc: Client
) -> None:
    """Two running relays each claim at most half the shards, never one the other holds."""
    writer, first_db, second_db = (Database(database_url) for _ in range(3))
    first = OutboxRelay(first_db, nc, poll_seconds=30.0)
    second = OutboxRelay(second_db, nc, poll_seconds=30.0)
    members = [await first._listen(), await second._listen()]  # as run() does
    owner = f"u{uuid.uuid4().hex[:8]}"
    try:
        ids = await _write_keys(writer, owner, 400, 1)  # enough keys to touch every shard
        async with first_db.transaction() as a, second_db.transaction() as b:
            mine, theirs = await first.claim_shards(a), await second.claim_shards(b)
            assert mine and theirs
            assert not set(mine) & set(theirs)
            assert len(mine) <= SHARDS // 2 and len(theirs) <= SHARDS // 2
        # Locks end with the transactions: either relay then publishes everything.
        while await first.publish_pending():
            pass
        rows = await _rows(writer, ids)
        assert all(r.sent_at is not None for r in rows.values())
    finally:
        for conn in members:
            if conn is not None:
                await conn.close()
        for db in (writer, first_db, second_db):
            await db.dispose()
