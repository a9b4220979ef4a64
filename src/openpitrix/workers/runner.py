"""Run a set of managers (consumers plus periodic duties) until asked to stop, then drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from openpitrix.workers.consumer import Consumer
from openpitrix.workers.service import Manager, Periodic, WorkerContext

log = logging.getLogger(__name__)


class WorkerGroup:
    def __init__(
        self, ctx: WorkerContext, managers: Sequence[Manager], *, concurrency: int | None = None
    ) -> None:
        """`concurrency`, when given, applies to every manager; otherwise each has its own
        default from the settings."""
        self._ctx = ctx
        self._managers = list(managers)
        self._consumers = [
            Consumer(ctx, m, concurrency=concurrency or m.default_concurrency(ctx.settings))
            for m in managers
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self._periodic: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for consumer, manager in zip(self._consumers, self._managers, strict=True):
            self._tasks.append(
                asyncio.create_task(
                    self._supervise(consumer, manager), name=f"consumer-{manager.name}"
                )
            )
            for duty in manager.periodic:
                self._periodic.append(
                    asyncio.create_task(self._every(duty), name=f"periodic-{duty.name}")
                )
        log.info("workers started: %s", ", ".join(m.name for m in self._managers))

    async def _supervise(self, consumer: Consumer, manager: Manager) -> None:
        """Keep a consumer running: a crash (say, NATS unreachable while binding) restarts it
        after a pause instead of leaving a live process that does nothing."""
        delay = 0.5
        while True:
            try:
                await consumer.run()
                return  # stopped on purpose
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer %s crashed; restarting in %.1f s", manager.name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _every(self, duty: Periodic) -> None:
        while True:
            try:
                await duty.run(self._ctx)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic %s failed", duty.name)
            await asyncio.sleep(duty.interval(self._ctx.settings))

    async def stop(self) -> None:
        """Stop fetching, let in-flight commands finish (or nak them), stop periodic duties."""
        for task in self._periodic:
            task.cancel()
        for consumer in self._consumers:
            consumer.stop()
        for task in self._periodic:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Once per hook, however many of the group's managers share it.
        for on_stop in dict.fromkeys(m.on_stop for m in self._managers if m.on_stop):
            await on_stop()
        log.info("workers stopped")
