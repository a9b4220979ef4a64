"""Rows read by key, the lookups that arrive together in one statement (`IN`).

A burst of deploys is followed by a burst of their event streams, and each stream first reads
its job's row. One statement each, a hundred streams queued for the streams' few connections,
and on PostgreSQL every round trip waited for a turn of the loop the burst kept busy: a
stream took 0.3-0.5 s to open (issue 12). Here the lookups that queue while one statement
runs go into the next one together, so a burst costs a few round trips, not one per client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select

from openpitrix.db.reads import Reads, Row

KeyT = TypeVar("KeyT", bound=Hashable)


@dataclass
class KeyedReads(Generic[KeyT]):
    """`get(key)`: the row of `statement` whose `key` column equals it, or None."""

    reads: Reads
    statement: Select[Any]  # the columns to read, the key's among them
    key: ColumnElement[Any]
    # Keys of one statement at most.
    max_keys: int = 200
    _waiting: dict[KeyT, list[asyncio.Future[Row | None]]] = field(default_factory=dict)
    _runner: asyncio.Task[None] | None = None
    statements: int = 0  # statements run, for tests and benchmarks

    async def get(self, key: KeyT) -> Row | None:
        answer: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(answer)
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="keyed-reads")
        return await answer

    async def _run(self) -> None:
        try:
            while self._waiting:
                keys = list(self._waiting)[: self.max_keys]
                answers = {key: self._waiting.pop(key) for key in keys}
                try:
                    self.statements += 1
                    [rows] = await self.reads.fetch(self.statement.where(self.key.in_(keys)))
                except Exception as error:
                    for futures in answers.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(error)
                    continue
                name = str(self.key.key)
                found = {row[name]: row for row in rows}
                for key, futures in answers.items():
                    for future in futures:
                        if not future.done():
                            future.set_result(found.get(key))
        finally:
            self._runner = None
            for futures in self._waiting.values():  # cancelled with lookups still waiting
                for future in futures:
                    future.cancel()
            self._waiting.clear()
