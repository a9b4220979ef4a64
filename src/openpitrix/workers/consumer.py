"""The consumer loop of one manager: fetch, dispatch with bounded concurrency, ack/nak/term."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import ValidationError

from openpitrix.bus.topology import heartbeat_interval
from openpitrix.workers.service import (
    Delivery,
    Manager,
    PermanentError,
    RetryableError,
    WorkerContext,
)

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"


class Consumer:
    def __init__(self, ctx: WorkerContext, manager: Manager, *, concurrency: int) -> None:
        self._ctx = ctx
        self._manager = manager
        self._concurrency = max(1, concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        bus = ctx.settings.bus
        self._heartbeat = heartbeat_interval(bus)
        self._max_deliver = bus.max_deliver
        self._backoff = bus.backoff_seconds or [bus.ack_wait_seconds]

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        settings = self._ctx.settings
        sub = await self._ctx.js.pull_subscribe_bind(
            durable=self._manager.name, stream=settings.bus.commands_stream
        )
        log.info("manager=%s consuming (concurrency=%d)", self._manager.name, self._concurrency)
        try:
            while not self._stopping.is_set():
                free = self._concurrency - len(self._inflight)
                if free <= 0:
                    # Every slot is busy: wait for one to free up or for stop, so the drain's
                    # grace period starts at SIGTERM, not whenever a long command ends.
                    stopping = asyncio.create_task(self._stopping.wait())
                    await asyncio.wait(
                        {*self._inflight, stopping}, return_when=asyncio.FIRST_COMPLETED
                    )
                    stopping.cancel()
                    continue
                try:
                    msgs = await sub.fetch(
                        batch=free, timeout=settings.worker.fetch_timeout_seconds
                    )
                except (NatsTimeoutError, TimeoutError):
                    continue
                except Exception as exc:  # connection trouble: nats-py reconnects underneath
                    log.warning("manager=%s fetch failed: %s", self._manager.name, exc)
                    await asyncio.sleep(0.5)
                    continue
                for msg in msgs:
                    task = asyncio.create_task(self._handle(msg))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
        finally:
            await self._drain()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _drain(self) -> None:
        """Let in-flight commands finish in the grace period; nak the rest for another worker."""
        if not self._inflight:
            return
        grace = self._ctx.settings.worker.drain_seconds
        log.info(
            "manager=%s draining %d in-flight commands", self._manager.name, len(self._inflight)
        )
        _, pending = await asyncio.wait(self._inflight, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _handle(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        num_delivered = msg.metadata.num_delivered or 1
        command = self._manager.commands.get(verb)
        if command is None:
            log.warning(
                "manager=%s subject=%s terminated: no handler for %r",
                self._manager.name,
                msg.subject,
                verb,
            )
            await msg.term()
            return
        try:
            payload = command.payload.model_validate_json(msg.data)
        except ValidationError as exc:
            # No redelivery can fix a malformed command: drop it at once, saying why.
            log.warning(
                "manager=%s subject=%s terminated: malformed payload: %s",
                self._manager.name,
                msg.subject,
                _reasons(exc),
            )
            await msg.term()
            return
        delivery = Delivery(
            subject=msg.subject,
            verb=verb,
            payload=payload,
            num_delivered=num_delivered,
            last_attempt=num_delivered >= self._max_deliver,
            heartbeat=msg.in_progress,
        )
        beat = asyncio.create_task(self._beat(msg))
        try:
            await command.handle(self._ctx, delivery, payload)
        except asyncio.CancelledError:
            # Drained: give the command back at once so another replica picks it up.
            with contextlib.suppress(Exception):
                await asyncio.shield(msg.nak())
            raise
        except PermanentError as exc:
            await self._give_up(msg, delivery, exc.code, exc.message)
        except RetryableError as exc:
            if delivery.last_attempt:
                await self._give_up(msg, delivery, "retries_exhausted", str(exc))
            else:
                log.warning("manager=%s %s retry: %s", self._manager.name, msg.subject, exc)
                await msg.nak(
                    delay=exc.delay if exc.delay is not None else self._delay(num_delivered)
                )
        except Exception as exc:
            log.exception("manager=%s %s failed", self._manager.name, msg.subject)
            if delivery.last_attempt:
                await self._give_up(msg, delivery, INTERNAL_ERROR, _summary(exc))
            else:
                await msg.nak(delay=self._delay(num_delivered))
        else:
            await self._ack(msg)
        finally:
            beat.cancel()

    async def _ack(self, msg: Msg) -> None:
        # Wait for the server to confirm: a worker that drains and exits right after must not
        # leave its finished command to be redelivered (harmless, handlers are idempotent,
        # but wasted work).
        try:
            await msg.ack_sync(timeout=5)
        except Exception as exc:
            log.warning(
                "manager=%s ack of %s unconfirmed: %s", self._manager.name, msg.subject, exc
            )

    def _delay(self, num_delivered: int) -> float:
        return self._backoff[min(num_delivered, len(self._backoff)) - 1]

    async def _give_up(self, msg: Msg, delivery: Delivery, code: str, message: str) -> None:
        if self._manager.on_give_up is not None:
            try:
                await self._manager.on_give_up(self._ctx, delivery, code, message)
            except Exception:
                # Recording the failure failed (database down?): keep the command for a retry.
                log.exception("manager=%s could not record failure", self._manager.name)
                await msg.nak(delay=self._delay(delivery.num_delivered))
                return
        await msg.term()

    async def _beat(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            with contextlib.suppress(Exception):
                await msg.in_progress()


def _summary(exc: Exception) -> str:
    """What a job may record of an unexpected error: its type and first line, never the
    multi-line detail (SQL statements and parameters) that only belongs in the logs."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"


def _reasons(exc: ValidationError) -> str:
    """Which fields of a payload are wrong and how, on one line ("task_id: Field required")."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}"
        for err in exc.errors(include_url=False)
    )
