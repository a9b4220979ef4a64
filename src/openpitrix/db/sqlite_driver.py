"""SQLAlchemy's aiosqlite adapter, with one thread hand-off per statement instead of four.

aiosqlite runs every call on the connection's own thread, and SQLAlchemy's adapter makes four
calls per statement (open a cursor, execute, fetch, close): each one queues a function, wakes
that thread and wakes the event loop again. Profiles of the task-manager put these wake-ups,
not SQLite, at the top (issue 12). The cursor here runs the whole statement (open, execute,
fetch every row, close) as one function on the connection's thread and keeps what SQLAlchemy
reads afterwards (description, rowcount, lastrowid) and the rows. Server-side cursors (streamed
results) keep the adapter's own cursor.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT, await_

_Outcome = tuple[Any, list[Any] | None, int, int | None]


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A client-side cursor whose statement costs one trip to the connection's thread."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:
        # No thread-side cursor is opened here: `_run` opens and closes one per statement.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    async def _async_soft_close(self) -> None:
        return None  # nothing is open on the thread between statements

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            return await_(self._run(operation, parameters, many=False))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        try:
            return await_(self._run(operation, seq_of_parameters, many=True))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _run(self, operation: str, parameters: Any, *, many: bool) -> None:
        conn = self._connection

        def statement() -> _Outcome:
            # On the connection's thread: the whole statement, rows included.
            cursor: sqlite3.Cursor = conn._conn.cursor()
            try:
                if many:
                    cursor.executemany(operation, parameters)
                else:
                    cursor.execute(operation, () if parameters is None else parameters)
                description = cursor.description
                rows = cursor.fetchall() if description else None
                return description, rows, cursor.rowcount, cursor.lastrowid
            finally:
                cursor.close()

        async with self._adapt_connection._execute_mutex:
            description, rows, rowcount, lastrowid = await conn._execute(statement)
        self._description = description
        self._rowcount = rowcount
        self._lastrowid = lastrowid
        self._rows = collections.deque(rows) if rows else collections.deque()

    def setinputsizes(self, *inputsizes: Sequence[Any]) -> None:
        return None


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module to hand `create_async_engine(module=...)` for `sqlite+aiosqlite`."""

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        adapted = super().connect(*arg, **kw)
        return OneHopConnection(self, adapted._connection)


def one_hop_dbapi() -> OneHopDBAPI:
    import aiosqlite

    return OneHopDBAPI(aiosqlite, sqlite3)
