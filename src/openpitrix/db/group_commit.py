"""Group commit: small write transactions that arrive together are written as one.

A burst of deploys is a hundred transactions of a few rows each. One at a time, each paid its
own turn at the write lock (on SQLite, a wait for the file lock behind the workers' commits;
on PostgreSQL, eight round trips, each a turn of a crowded event loop), so the hundredth 202
came seconds after its POST (issue 12). Here the requests that queue while one transaction
runs go into the next one together: one BEGIN, one statement per table, one COMMIT.

A use case gives three steps (`BatchSteps`): `preload` reads what the whole batch checks, in a
few statements; `check` decides one item from what was loaded and writes nothing, so a domain
error it raises answers that item alone and leaves the others in; `write` adds the item's rows
to the session. The rows go out when the transaction commits. Should the transaction fail
there (a constraint another process raced for, a lost connection), no item of it is answered
from it: each runs again alone, the same three steps in a transaction of its own, and gets
that outcome, so one bad item costs the others only time.

An answer is given only after its transaction has committed, and a request that goes away
while it waits does not take the others' batch with it: batches run in a task of their own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from openpitrix.db.engine import Database
from openpitrix.errors import AppError

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
LoadedT = TypeVar("LoadedT")
PlanT = TypeVar("PlanT")
ResultT = TypeVar("ResultT")
_Item = TypeVar("_Item", contravariant=True)
_Result = TypeVar("_Result", covariant=True)


class BatchSteps(Protocol[_Item, LoadedT, PlanT, _Result]):
    """The three steps of one use case (module docstring)."""

    async def preload(self, session: AsyncSession, items: Sequence[_Item]) -> LoadedT:
        """Read what the items' checks need, for all of them at once. The value is kept
        until the batch's checks are done (it may hold objects that the session's identity
        map holds only weakly)."""
        ...

    async def check(self, session: AsyncSession, loaded: LoadedT, item: _Item) -> PlanT:
        """Everything the item checks, raising a domain error (`AppError`) to refuse it.
        Writes nothing."""
        ...

    async def write(self, session: AsyncSession, plan: PlanT) -> _Result:
        """Add the item's rows to the session; the batch's commit writes them."""
        ...


@dataclass
class _Waiting(Generic[ItemT, ResultT]):
    item: ItemT
    answer: asyncio.Future[ResultT]


@dataclass
class GroupCommit(Generic[ItemT, LoadedT, PlanT, ResultT]):
    """One use case's queue of writes in one process (module docstring)."""

    db: Database
    steps: BatchSteps[ItemT, LoadedT, PlanT, ResultT]
    # Items of one transaction at most: a larger batch holds the write lock longer, and the
    # first answers of a burst wait for the whole of it.
    max_batch: int = 64
    _queue: list[_Waiting[ItemT, ResultT]] = field(default_factory=list)
    _runner: asyncio.Task[None] | None = None
    batches: int = 0  # transactions committed or tried, for tests and benchmarks

    async def submit(self, item: ItemT) -> ResultT:
        """The item's result once its transaction has committed, or the error refusing it."""
        answer: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(item, answer))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="group-commit")
        return await answer

    async def close(self) -> None:
        """Let the queued items finish (a lifespan's end)."""
        if self._runner is not None:
            await asyncio.shield(self._runner)

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, self._queue = (
                    self._queue[: self.max_batch],
                    self._queue[self.max_batch :],
                )
                await self._batch(batch)
        finally:
            self._runner = None
            if self._queue:  # cancelled with items still waiting: they get the cancellation
                for waiting in self._queue:
                    _settle_error(waiting.answer, asyncio.CancelledError())
                self._queue = []

    async def _batch(self, batch: list[_Waiting[ItemT, ResultT]]) -> None:
        self.batches += 1
        try:
            outcomes = await self._together(batch)
        except BaseException as error:
            if not isinstance(error, Exception):
                for waiting in batch:
                    _settle_error(waiting.answer, error)
                raise
            log.warning(
                "group commit of %d item(s) failed (%s: %s); each runs alone",
                len(batch),
                type(error).__name__,
                error,
            )
            await asyncio.gather(*(self._alone(waiting) for waiting in batch))
            return
        _answer(outcomes)

    async def _alone(self, waiting: _Waiting[ItemT, ResultT]) -> None:
        """The item in a transaction of its own: its own outcome, whatever it is."""
        try:
            outcomes = await self._together([waiting])
        except Exception as error:
            _settle_error(waiting.answer, error)
        else:
            _answer(outcomes)

    async def _together(self, batch: list[_Waiting[ItemT, ResultT]]) -> _Outcomes[ItemT, ResultT]:
        """The three steps for `batch` in one transaction: each item's result, or the domain
        error its check refused it with. Raises when the transaction fails."""
        written: list[tuple[_Waiting[ItemT, ResultT], ResultT]] = []
        refused: list[tuple[_Waiting[ItemT, ResultT], AppError]] = []
        async with self.db.transaction() as session:
            loaded = await self.steps.preload(session, [w.item for w in batch])
            plans: list[tuple[_Waiting[ItemT, ResultT], PlanT]] = []
            for waiting in batch:
                try:
                    plans.append((waiting, await self.steps.check(session, loaded, waiting.item)))
                except AppError as error:
                    refused.append((waiting, error))
            del loaded
            for waiting, plan in plans:
                written.append((waiting, await self.steps.write(session, plan)))
        return written, refused


_Outcomes = tuple[
    list[tuple[_Waiting[ItemT, ResultT], ResultT]], list[tuple[_Waiting[ItemT, ResultT], AppError]]
]


def _answer(outcomes: _Outcomes[ItemT, ResultT]) -> None:
    """Give each item its answer (after its transaction committed)."""
    written, refused = outcomes
    for waiting, result in written:
        if not waiting.answer.done():
            waiting.answer.set_result(result)
    for waiting, error in refused:
        _settle_error(waiting.answer, error)


def _settle_error(answer: asyncio.Future[ResultT], error: BaseException) -> None:
    if answer.done():
        return
    if isinstance(error, asyncio.CancelledError):
        answer.cancel()
    else:
        answer.set_exception(error)
