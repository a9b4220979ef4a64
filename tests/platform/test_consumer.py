"""The consumer loop's contract with handlers: ack on return, redelivery after a retryable
error, term plus the give-up hook on a permanent error or the last attempt, term at once for a
payload that does not fit its command's model, and draining."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import nats
import pytest
from nats.js import JetStreamContext
from pydantic import BaseModel, ConfigDict

from openpitrix.bus.topology import JOB_MANAGER, build_topology, ensure_topology
from openpitrix.db.engine import Database
from openpitrix.jobs.commands import RunTask
from openpitrix.settings import BusSettings, Settings
from openpitrix.workers.consumer import Consumer
from openpitrix.workers.service import (
    Command,
    Delivery,
    Manager,
    PermanentError,
    RetryableError,
    WorkerContext,
)


class Anything(BaseModel):
    """A payload model that takes any JSON object."""

    model_config = ConfigDict(extra="allow")


def go(handler: Callable[[WorkerContext, Delivery], Awaitable[None]]) -> dict[str, Command[Any]]:
    """The commands of a test manager: `go`, taking any object, handled by `handler`."""

    async def handle(ctx: WorkerContext, d: Delivery, payload: Anything) -> None:
        await handler(ctx, d)

    return {"go": Command(Anything, handle)}


@dataclass
class Recorder:
    calls: list[tuple[str, int]] = field(default_factory=list)
    gave_up: list[tuple[str, str]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


# The bus settings of these tests' consumers and workers.
BUS = BusSettings(ack_wait_seconds=2.0, backoff_seconds=[2.0, 2.0], max_deliver=3)


async def _consumer(js: JetStreamContext, bus: BusSettings) -> str:
    """A durable consumer configured as the workers' are (build_topology), on its own subject."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    config = dataclasses.replace(
        build_topology(bus).consumers[JOB_MANAGER],
        durable_name=name,
        filter_subject=f"op.cmd.{name}.>",
    )
    await js.add_consumer(bus.commands_stream, config=config)
    return name


@pytest.fixture
async def bus(nats_url: str, settings: Settings) -> AsyncIterator[tuple[JetStreamContext, str]]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_topology(js, settings.bus)
    name = await _consumer(js, BUS)
    yield js, name
    await js.delete_consumer(settings.bus.commands_stream, name)
    await nc.close()


async def _run(
    js: JetStreamContext,
    name: str,
    settings: Settings,
    db: Database,
    manager: Manager,
    bus: BusSettings = BUS,
) -> tuple[Consumer, asyncio.Task[None], httpx.AsyncClient]:
    settings = settings.model_copy(update={"bus": bus})
    http = httpx.AsyncClient()
    ctx = WorkerContext(settings=settings, db=db, js=js, http=http, executor="test")
    consumer = Consumer(ctx, manager, concurrency=2)
    return consumer, asyncio.create_task(consumer.run()), http


async def _stop(consumer: Consumer, task: asyncio.Task[None], http: httpx.AsyncClient) -> None:
    consumer.stop()
    await asyncio.wait_for(task, 15)
    await http.aclose()


async def test_retryable_error_is_redelivered_then_succeeds(
    bus: tuple[JetStreamContext, str], settings: Settings, db: Database
) -> None:
    js, name = bus
    rec = Recorder()

    async def flaky(ctx: WorkerContext, d: Delivery) -> None:
        rec.calls.append((d.verb, d.num_delivered))
        if d.num_delivered == 1:
            raise RetryableError("upstream busy", delay=0.2)
        rec.done.set()

    consumer, task, http = await _run(js, name, settings, db, Manager(name, go(flaky)))
    await js.publish(f"op.cmd.{name}.go", b'{"n": 1}')
    await asyncio.wait_for(rec.done.wait(), 10)
    await _stop(consumer, task, http)
    assert rec.calls == [("go", 1), ("go", 2)]


async def test_permanent_error_terminates_and_records_once(
    bus: tuple[JetStreamContext, str], settings: Settings, db: Database
) -> None:
    js, name = bus
    rec = Recorder()

    async def broken(ctx: WorkerContext, d: Delivery) -> None:
        rec.calls.append((d.verb, d.num_delivered))
        raise PermanentError("bad_input", "the input can never work")

    async def give_up(ctx: WorkerContext, d: Delivery, code: str, message: str) -> None:
        rec.gave_up.append((code, message))
        rec.done.set()

    manager = Manager(name, go(broken), on_give_up=give_up)
    consumer, task, http = await _run(js, name, settings, db, manager)
    await js.publish(f"op.cmd.{name}.go", b"{}")
    await asyncio.wait_for(rec.done.wait(), 10)
    await asyncio.sleep(2.5)  # past ack_wait: a term'd message must not come back
    await _stop(consumer, task, http)
    assert rec.calls == [("go", 1)]
    assert rec.gave_up == [("bad_input", "the input can never work")]


async def test_unexpected_errors_retry_until_the_last_attempt_then_give_up(
    bus: tuple[JetStreamContext, str], settings: Settings, db: Database
) -> None:
    js, name = bus
    rec = Recorder()

    async def crashing(ctx: WorkerContext, d: Delivery) -> None:
        rec.calls.append((d.verb, d.num_delivered))
        raise ValueError("bug")

    async def give_up(ctx: WorkerContext, d: Delivery, code: str, message: str) -> None:
        rec.gave_up.append((code, message))
        rec.done.set()

    manager = Manager(name, go(crashing), on_give_up=give_up)
    consumer, task, http = await _run(js, name, settings, db, manager)
    await js.publish(f"op.cmd.{name}.go", b"{}")
    await asyncio.wait_for(rec.done.wait(), 20)
    await _stop(consumer, task, http)
    assert [n for _, n in rec.calls] == [1, 2, 3]
    assert rec.gave_up == [("internal_error", "ValueError: bug")]


async def test_bad_payload_and_unknown_verb_are_dropped_not_retried(
    bus: tuple[JetStreamContext, str], settings: Settings, db: Database
) -> None:
    js, name = bus
    rec = Recorder()

    async def ok(ctx: WorkerContext, d: Delivery) -> None:
        rec.calls.append((d.verb, d.num_delivered))
        rec.done.set()

    consumer, task, http = await _run(js, name, settings, db, Manager(name, go(ok)))
    await js.publish(f"op.cmd.{name}.go", b"not json")
    await js.publish(f"op.cmd.{name}.unknown", b"{}")
    await js.publish(f"op.cmd.{name}.go", b'{"valid": true}')
    await asyncio.wait_for(rec.done.wait(), 10)
    await asyncio.sleep(2.5)
    await _stop(consumer, task, http)
    assert rec.calls == [("go", 1)]
    info = await js.consumer_info(settings.bus.commands_stream, name)
    assert info.num_pending == 0 and info.num_ack_pending == 0


async def test_a_malformed_command_is_terminated_at_once_with_the_reason_logged(
    bus: tuple[JetStreamContext, str],
    settings: Settings,
    db: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A payload missing a field or carrying a wrong type is dropped on its first delivery, not
    retried until the deliveries run out: the log says which subject and what was wrong."""
    js, name = bus
    rec = Recorder()

    async def run(ctx: WorkerContext, d: Delivery, command: RunTask) -> None:
        rec.calls.append((command.task_id, d.num_delivered))
        rec.done.set()

    async def give_up(ctx: WorkerContext, d: Delivery, code: str, message: str) -> None:
        rec.gave_up.append((code, message))

    caplog.set_level(logging.WARNING, logger="openpitrix.workers.consumer")
    manager = Manager(name, {"run": Command(RunTask, run)}, on_give_up=give_up)
    consumer, task, http = await _run(js, name, settings, db, manager)
    subject = f"op.cmd.{name}.run"
    try:
        await js.publish(subject, b'{"job_id": "j-1"}')
        await js.publish(subject, b'{"job_id": 7, "task_id": "t-1"}')
        await js.publish(subject, b'{"job_id": "j-1", "task_id": "t-1", "dispatch": 1}')
        await asyncio.wait_for(rec.done.wait(), 10)

        def malformed() -> list[str]:
            return [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]

        deadline = asyncio.get_running_loop().time() + 10
        while True:
            info = await js.consumer_info(settings.bus.commands_stream, name)
            if len(malformed()) == 2 and info.num_ack_pending == 0:
                break
            assert asyncio.get_running_loop().time() < deadline, (malformed(), info)
            await asyncio.sleep(0.1)
    finally:
        await _stop(consumer, task, http)
    assert info.num_redelivered == 0 and info.num_pending == 0, info
    assert rec.calls == [("t-1", 1)]
    assert rec.gave_up == []
    missing, wrong = sorted(malformed(), key=lambda m: "task_id" not in m)
    assert f"subject={subject}" in missing and "task_id: Field required" in missing, missing
    assert f"subject={subject}" in wrong and "job_id: Input should be a valid string" in wrong


async def test_long_handler_heartbeats_so_it_is_not_redelivered(
    bus: tuple[JetStreamContext, str], settings: Settings, db: Database
) -> None:
    js, name = bus
    rec = Recorder()

    async def slow(ctx: WorkerContext, d: Delivery) -> None:
        rec.calls.append((d.verb, d.num_delivered))
        await asyncio.sleep(5)  # longer than ack_wait (2 s)
        rec.done.set()

    consumer, task, http = await _run(js, name, settings, db, Manager(name, go(slow)))
    await js.publish(f"op.cmd.{name}.go", b"{}")
    await asyncio.wait_for(rec.done.wait(), 15)
    await asyncio.sleep(0.5)
    await _stop(consumer, task, http)
    assert rec.calls == [("go", 1)]


async def test_stop_drains_in_flight_work_before_returning(
    bus: tuple[JetStreamContext, str], settings: Settings, db: Database
) -> None:
    js, name = bus
    rec = Recorder()
    started = asyncio.Event()

    async def slow(ctx: WorkerContext, d: Delivery) -> None:
        started.set()
        await asyncio.sleep(1.0)
        rec.calls.append((d.verb, d.num_delivered))

    consumer, task, http = await _run(js, name, settings, db, Manager(name, go(slow)))
    await js.publish(f"op.cmd.{name}.go", b"{}")
    await asyncio.wait_for(started.wait(), 10)
    await _stop(consumer, task, http)  # returns only after the handler finished
    assert rec.calls == [("go", 1)]
    info = await js.consumer_info(settings.bus.commands_stream, name)
    assert info.num_ack_pending == 0


async def test_a_stalled_handler_is_not_redelivered_before_the_ack_wait(
    nats_url: str, settings: Settings, db: Database
) -> None:
    """Retry delays shorter than the ack wait must not shorten it: nats-server would take a
    consumer backoff's first value as the ack wait, and a worker whose event loop stalled
    for longer would get its running command again and run it twice at once."""
    bus = BusSettings(ack_wait_seconds=3.0, backoff_seconds=[0.5, 0.5], max_deliver=3)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    name = await _consumer(js, bus)
    info = await js.consumer_info(bus.commands_stream, name)
    assert info.config.ack_wait == 3.0
    rec = Recorder()

    async def stalling(ctx: WorkerContext, d: Delivery) -> None:
        rec.calls.append((d.verb, d.num_delivered))
        time.sleep(1.5)  # the stall under test: no heartbeat can go out meanwhile
        rec.done.set()

    consumer, task, http = await _run(js, name, settings, db, Manager(name, go(stalling)), bus)
    try:
        await js.publish(f"op.cmd.{name}.go", b"{}")
        await asyncio.wait_for(rec.done.wait(), 10)
        await asyncio.sleep(1.0)
    finally:
        await _stop(consumer, task, http)
        await js.delete_consumer(bus.commands_stream, name)
        await nc.close()
    assert rec.calls == [("go", 1)]
