"""SQLAlchemy's aiosqlite adapter, with one thread hand-off per statement instead of four.

aiosqlite runs every call on the connection's own thread, and SQLAlchemy's adapter makes four
calls per statement (open a cursor, execute, fetch, close): each one queues a function, wakes
that thread and wakes the event loop again. Profiles of the task-manager put these wake-ups,
not SQLite, at the top (issue 12). The cursor here runs the whole statement (open, execute,
fetch every row, close) as one function on the connection's thread and keeps what SQLAlchemy
reads afterwards (description, rowcount, lastrowid) and the rows. Server-side cursors (streamed
results) keep the adapter's own cursor.

Second step (issue 12): a statement now runs on the event loop's own thread, without any
hand-off. A hand-off costs ~0.15-0.2 ms of CPU on these hosts (a futex wake-up of SQLite's
thread, the loop's wake-up pipe, GIL hand-overs), while the statements of the job engine take
5-300 µs of SQLite work: a one-statement transaction through SQLAlchemy cost 2.2 ms of CPU
with hand-offs and 0.4 ms without. What keeps the loop from ever waiting on another process:
the connection's busy timeout is 0 while it runs on the loop, so a statement that would have
to wait for a lock (a `BEGIN IMMEDIATE` while another process writes) fails at once with
SQLITE_BUSY, having done nothing, and runs again on the connection's thread with the real
busy timeout. Large batches (`executemany` of many rows, an index's bulk insert) go to the
thread too, where SQLite works without holding the loop. Commits and rollbacks likewise.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT, await_

_Outcome = tuple[Any, list[Any] | None, int, int | None]
_T = TypeVar("_T")

# An `executemany` of more rows than this runs on the connection's thread: SQLite's work for
# it is long enough to serve other coroutines meanwhile.
LOOP_BATCH_ROWS = 64
# How long a statement run on the connection's thread may wait for a lock (the engine's
# `timeout`, seconds, when it passes none).
DEFAULT_BUSY_WAIT_MS = 60_000


def is_busy(exc: sqlite3.Error) -> bool:
    """SQLite would have had to wait for a lock (busy timeout 0), extended codes included
    (a WAL recovery in progress, ...): nothing was done, and a try that may wait can do it."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # not a code SQLite gave (the module's own checks)
        return False
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _statement(conn: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    """The whole statement, rows included."""
    cursor = conn.cursor()
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


def _waiting(conn: sqlite3.Connection, wait_ms: int, work: Callable[[], _T]) -> _T:
    """`work` on the connection's thread, waiting up to `wait_ms` for locks."""
    conn.execute(f"PRAGMA busy_timeout={wait_ms}")
    try:
        return work()
    finally:
        conn.execute("PRAGMA busy_timeout=0")


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
        adapt: OneHopConnection = self._adapt_connection  # type: ignore[assignment]
        async with adapt._execute_mutex:
            description, rows, rowcount, lastrowid = await adapt.run(
                partial(_statement, adapt.raw, operation, parameters, many),
                on_loop=not many or len(parameters) <= LOOP_BATCH_ROWS,
            )
        self._description = description
        self._rowcount = rowcount
        self._lastrowid = lastrowid
        self._rows = collections.deque(rows) if rows else collections.deque()

    def setinputsizes(self, *inputsizes: Sequence[Any]) -> None:
        return None


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    """Runs statements, commits and rollbacks on the event loop; where SQLite would wait for a
    lock, on the connection's thread (module docstring). The sqlite3 connection is opened
    with `check_same_thread=False`; the adapter's mutex and the awaited hand-offs keep its
    uses one at a time."""

    __slots__ = ("busy_wait_ms",)
    _cursor_cls = OneHopCursor
    busy_wait_ms: int

    @property
    def raw(self) -> sqlite3.Connection:
        return self._connection._conn  # type: ignore[no-any-return]

    async def run(self, work: Callable[[], _T], *, on_loop: bool = True) -> _T:
        """`work` (a function of the raw connection) on the loop, or on the connection's
        thread where it would wait for a lock or is a large batch."""
        if on_loop:
            try:
                return work()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
        result: _T = await self._connection._execute(
            partial(_waiting, self.raw, self.busy_wait_ms, work)
        )
        return result

    def commit(self) -> None:
        self._end("commit")

    def rollback(self) -> None:
        self._end("rollback")

    def _end(self, verb: str) -> None:
        if not self._connection._connection:
            return  # closed (as the adapter it replaces)
        try:
            raw = self.raw
            await_(self.run(raw.commit if verb == "commit" else raw.rollback))
        except Exception as error:
            self._handle_exception(error)


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module to hand `create_async_engine(module=...)` for `sqlite+aiosqlite`."""

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        # Used from the loop's thread as well as from the connection's own (above).
        kw["check_same_thread"] = False
        timeout = kw.get("timeout")
        adapted = super().connect(*arg, **kw)
        connection = OneHopConnection(self, adapted._connection)
        connection.busy_wait_ms = (
            DEFAULT_BUSY_WAIT_MS if timeout is None else int(float(timeout) * 1000)
        )
        # Never wait on the loop: a lock SQLite would wait for fails the statement at once
        # (and `run` sends it to the thread, which sets the wait for that statement).
        connection.raw.execute("PRAGMA busy_timeout=0")
        return connection


def one_hop_dbapi() -> OneHopDBAPI:
    import aiosqlite

    return OneHopDBAPI(aiosqlite, sqlite3)
