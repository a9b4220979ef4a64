"""Hot reads on the driver's own connections: SQLAlchemy builds and compiles the statement
(compiled once per statement shape), the driver runs it, no session and no ORM.

Why: a list request through an `AsyncSession` spent ~1.3 ms of gateway CPU in the session,
the execution context and, on SQLite, aiosqlite's thread hand-offs (several per statement),
against ~0.15 ms for the same SQL and rows here. What stays the same: the SQL (the same
`Select`, compiled by the engine's dialect), the column types' result processing (the same
processors SQLAlchemy applies), and a database outage answering 503 (driver errors are raised
as SQLAlchemy's).

- SQLite: `sqlite3` connections (read-only, WAL) used on the event loop's thread, a read's
  statements in one read transaction (one snapshot); see `_SqliteReaders` for why not in a
  thread.
- PostgreSQL: an asyncpg pool of its own (`database.read_pool_size`), whose statement cache
  keeps each shape prepared on each connection.

`Reads.prepare` goes one step further for the hottest lists: the statement of a shape (which
filters, how many values each, which sort) is built and compiled once, with every
caller-dependent value a named bind parameter; a request only looks up its shape and passes
its values (building a `Select` and its cache key was ~0.2 ms of every request).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import JSON
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.sql import Select

from openpitrix.db.sqlite_driver import is_busy
from openpitrix.db.types import UTCDateTime

Processor = Callable[[Any], Any] | None
Row = dict[str, Any]

# Distinct statement shapes kept compiled (each caller scope, filter set and sort makes one).
CACHE_SIZE = 500
# How long a SQLite read retried in a thread may wait for a busy file (as the engine's).
BUSY_WAIT_MS = 60_000
# Threads running SQLite scans (searches) off the loop: two cores here; more would only queue
# in the GIL for the rows' conversion.
SCAN_THREADS = 2


@dataclass(frozen=True, slots=True)
class _Compiled:
    compiled: Any  # sqlalchemy.sql.compiler.SQLCompiler
    names: tuple[str, ...]
    processors: tuple[Processor, ...]
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement compiled once: its SQL, its bind parameters in the driver's order (with
    the values of those the statement fixed itself), and how its columns are converted."""

    sql: str
    slots: tuple[tuple[str, Any, Processor], ...]  # (name, fixed value, bind processor)
    names: tuple[str, ...]
    processors: tuple[Processor, ...]
    slow: bool  # a scan (a search): on SQLite, run in a thread, not on the loop

    def params(self, values: Mapping[str, Any]) -> list[Any]:
        out = []
        for name, fixed, process in self.slots:
            if name in values:
                value = values[name]
                out.append(process(value) if process is not None and value is not None else value)
            else:
                out.append(fixed)
        return out


def _utc_from_text(value: str | None) -> datetime | None:
    """SQLite's DateTime processor (`datetime.fromisoformat`) and UTCDateTime's in one call."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _utc(value: datetime | None) -> datetime | None:
    """UTCDateTime's processing of a driver's aware datetime (asyncpg's timestamptz)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc_json_text(value: str | None) -> str | datetime | None:
    """A SQLite timestamp as the text a JSON body holds for it: what orjson (`OPT_UTC_Z`) and
    pydantic write for the UTC datetime, `2026-01-02T03:04:05.000120Z`, or without a fraction
    `2026-01-02T03:04:05Z`. SQLAlchemy stores `YYYY-MM-DD HH:MM:SS.ffffff`; any other form
    is parsed as `_utc_from_text` does (its datetime is written the same way)."""
    if value is None:
        return None
    if len(value) == 26 and value[10] == " " and value[19] == ".":
        fraction = value[19:]
        return f"{value[:10]}T{value[11:19]}{'' if fraction == '.000000' else fraction}Z"
    return _utc_from_text(value)


def _json_fragment(value: Any) -> Any:
    """A SQLite JSON document as it will be written into a JSON body: the stored text itself.

    The engine stores documents as orjson writes them (`db.engine`), so parsing one and
    writing it again gives back the same bytes; a number SQLite kept as a number (as
    SQLAlchemy's processor allows) is passed on as is."""
    if isinstance(value, str):
        return orjson.Fragment(value)
    return value


def _result_processor(column: Any, dialect: Dialect, *, json_body: bool = False) -> Processor:
    sqlite = dialect.name == "sqlite"
    if isinstance(column.type, UTCDateTime):
        # The same conversions as the type's composed processor, without its layers of calls
        # (a page of 20 rows has 60 timestamps).
        if sqlite:
            return _utc_json_text if json_body else _utc_from_text
        return _utc
    if json_body and sqlite and column.type._type_affinity is JSON:
        return _json_fragment
    processor: Processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
    return processor


class _SqliteReaders:
    """SQLite connections for reads, run on the event loop's thread.

    In WAL mode a read never waits for a writer, and the hot reads take 0.1-1 ms of SQLite
    work: handing each to a thread cost more than that here (a futex wake-up, the loop's
    wake-up pipe and a GIL hand-off per read, several syscalls each ~0.1 ms or more on this
    kind of sandboxed host). The connections do not wait for locks (busy timeout 0); in the
    rare case SQLite says the file is busy (a WAL reset or recovery in progress), that read is
    retried once in a thread that may wait, so the loop itself never waits on a lock."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._idle: deque[tuple[int, sqlite3.Connection]] = deque()
        self._generation = 0
        self._executor: ThreadPoolExecutor | None = None
        self._scans: ThreadPoolExecutor | None = None

    def _connect(self) -> sqlite3.Connection:
        # uri + mode=rw: never create the file (a missing database is an outage, not an
        # empty database); query_only: these connections cannot write.
        conn = sqlite3.connect(
            f"file:{Path(self._path).as_posix()}?mode=rw",
            uri=True,
            timeout=0,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute("PRAGMA query_only=ON")
        return conn

    def _run(
        self, statements: Sequence[tuple[str, Sequence[Any]]], *, wait: bool = False
    ) -> list[list[tuple[Any, ...]]]:
        try:
            generation, conn = self._idle.pop()
        except IndexError:
            generation, conn = self._generation, self._connect()
        ok = False
        try:
            if wait:
                conn.execute(f"PRAGMA busy_timeout={BUSY_WAIT_MS}")
            if len(statements) == 1:
                sql, params = statements[0]
                results = [conn.execute(sql, params).fetchall()]
            else:
                # One read transaction: every statement of the read sees the same snapshot.
                conn.execute("BEGIN")
                try:
                    results = [conn.execute(sql, params).fetchall() for sql, params in statements]
                finally:
                    conn.execute("ROLLBACK")
            if wait:
                conn.execute("PRAGMA busy_timeout=0")
            ok = True
            return results
        finally:
            if ok and generation == self._generation:
                self._idle.append((generation, conn))
            else:
                conn.close()

    async def run(
        self, statements: Sequence[tuple[str, Sequence[Any]]], *, slow: bool = False
    ) -> list[list[tuple[Any, ...]]]:
        try:
            if not slow:
                try:
                    return self._run(statements)
                except sqlite3.OperationalError as exc:
                    if not is_busy(exc):
                        raise
            # A scan (a search's LIKE over every visible row) takes milliseconds: in a thread,
            # the loop serves other requests meanwhile (sqlite3 releases the GIL while SQLite
            # works). Its own threads: a busy-file retry must not queue behind scans.
            executor = self._scans if slow else self._executor
            if executor is None:
                executor = ThreadPoolExecutor(
                    SCAN_THREADS if slow else 1,
                    thread_name_prefix="sqlite-scan" if slow else "sqlite-read",
                )
                if slow:
                    self._scans = executor
                else:
                    self._executor = executor
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                executor, functools.partial(self._run, statements, wait=True)
            )
        except sqlite3.Error as exc:
            raise _as_sqlalchemy(exc, statements) from exc

    def close(self) -> None:
        """Close the idle connections; one in use closes when its read ends."""
        self._generation += 1
        while self._idle:
            self._idle.pop()[1].close()
        for executor in (self._executor, self._scans):
            if executor is not None:
                executor.shutdown(wait=False)
        self._executor = self._scans = None


class _PostgresReaders:
    def __init__(self, dsn: str, size: int, recycle_seconds: int) -> None:
        self._dsn = dsn
        self._size = size
        self._recycle = float(recycle_seconds) if recycle_seconds > 0 else 0.0
        self._pool: Any = None
        self._opening = asyncio.Lock()

    async def _init_connection(self, conn: Any) -> None:
        # As SQLAlchemy's asyncpg dialect does: JSON decoded by the driver, with orjson.
        for kind in ("json", "jsonb"):
            await conn.set_type_codec(
                kind, schema="pg_catalog", encoder=_json_text, decoder=orjson.loads
            )

    async def _get_pool(self) -> Any:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    import asyncpg

                    # min_size = max_size, and idle connections kept until recycled: no
                    # connection churn under load or between bursts.
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=0,
                        max_size=self._size,
                        max_inactive_connection_lifetime=self._recycle,
                        init=self._init_connection,
                    )
        return self._pool

    async def run(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[tuple[Any, ...]]]:
        import asyncpg

        try:
            pool = await self._get_pool()
            async with pool.acquire() as conn:
                # READ COMMITTED, as a session's statements were: each statement its snapshot.
                return [list(await conn.fetch(sql, *params)) for sql, params in statements]
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as exc:
            raise _as_sqlalchemy(exc, statements) from exc
        except TimeoutError as exc:
            raise _as_sqlalchemy(exc, statements) from exc

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 10)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _as_sqlalchemy(
    exc: BaseException, statements: Sequence[tuple[str, Sequence[Any]]]
) -> sa_exc.DBAPIError:
    """The driver's error as SQLAlchemy raises it: the error handlers know those (503 for a
    database that cannot be reached)."""
    sql = statements[0][0] if statements else ""
    if isinstance(exc, sqlite3.OperationalError | OSError | TimeoutError) or not isinstance(
        exc, sqlite3.Error
    ):
        return sa_exc.OperationalError(sql, None, exc)
    return sa_exc.DBAPIError(sql, None, exc)


class Reads:
    """The hot-read executor of one `Database`."""

    def __init__(
        self,
        url: str,
        dialect: Dialect,
        *,
        pool_size: int,
        recycle_seconds: int,
    ) -> None:
        self._dialect = dialect
        self._cache: dict[Any, _Compiled] = {}
        self._prepared: dict[Hashable, Prepared] = {}
        parsed = make_url(url)
        self._sqlite: _SqliteReaders | None = None
        self._postgres: _PostgresReaders | None = None
        if dialect.name == "sqlite":
            self._sqlite = _SqliteReaders(parsed.database or "")
        else:
            dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            self._postgres = _PostgresReaders(dsn, pool_size, recycle_seconds)

    def _compile(self, stmt: Select[Any]) -> tuple[_Compiled, Any]:
        key = stmt._generate_cache_key()
        entry = self._cache.get(key[0]) if key is not None else None
        if entry is None:
            # With its cache key: later statements of the shape pass their own values to it.
            compiled = stmt.compile(dialect=self._dialect, cache_key=key)
            names = tuple(str(c.key) for c in stmt.selected_columns)
            processors = tuple(_result_processor(c, self._dialect) for c in stmt.selected_columns)
            binds = []
            for name, bind in compiled.binds.items():
                process = bind.type.dialect_impl(self._dialect).bind_processor(self._dialect)
                if process is not None:
                    binds.append((name, process))
            entry = _Compiled(compiled, names, processors, tuple(binds))
            if key is not None:
                if len(self._cache) >= CACHE_SIZE:
                    self._cache.clear()
                self._cache[key[0]] = entry
        return entry, key

    def _prepare(self, stmt: Select[Any]) -> tuple[_Compiled, tuple[str, Sequence[Any]]]:
        entry, key = self._compile(stmt)
        compiled = entry.compiled
        # This statement's own values, matched to the cached compilation's parameters (as
        # SQLAlchemy does for its compiled cache); expanding IN lists rendered for their size.
        params = compiled.construct_params(extracted_parameters=key[1] if key is not None else None)
        for name, process in entry.binds:
            value = params.get(name)
            if isinstance(value, list | tuple):
                params[name] = [process(v) for v in value]
            elif value is not None:
                params[name] = process(value)
        expanded = compiled.construct_expanded_state(params)
        return entry, (expanded.statement, expanded.positional_parameters or ())

    async def fetch(self, *stmts: Select[Any]) -> list[list[Row]]:
        """Each statement's rows as dicts of processed values, all in one read."""
        prepared = [self._prepare(stmt) for stmt in stmts]
        statements = [sql for _, sql in prepared]
        if self._sqlite is not None:
            results = await self._sqlite.run(statements)
        else:
            assert self._postgres is not None
            results = await self._postgres.run(statements)
        return [
            _converted(entry.names, entry.processors, rows)
            for (entry, _), rows in zip(prepared, results, strict=True)
        ]

    @property
    def dialect_name(self) -> str:
        return str(self._dialect.name)

    def prepare(
        self,
        key: Hashable,
        build: Callable[[], Select[*tuple[Any, ...]]],
        *,
        slow: bool = False,
        json_body: bool = False,
    ) -> Prepared:
        """The statement of this shape, built by `build` and compiled on first use. Every
        value that differs between requests of the shape must be a named `bindparam` with no
        value in it (a value would be kept for every later request): `run` passes them.

        With `json_body` its rows are only ever written into a JSON body (orjson,
        `OPT_UTC_Z`): on SQLite, timestamps come as that body's text and JSON documents as
        their stored text (`orjson.Fragment`), not parsed only to be written again."""
        prepared = self._prepared.get(key)
        if prepared is not None:
            return prepared
        stmt = build()
        compiled = stmt.compile(dialect=self._dialect)
        fixed = compiled.construct_params(_check=False)
        slots = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            process = bind.type.dialect_impl(self._dialect).bind_processor(self._dialect)
            value = fixed.get(name)
            if process is not None and value is not None:
                value = process(value)
            slots.append((name, value, process))
        prepared = Prepared(
            sql=compiled.string,
            slots=tuple(slots),
            names=tuple(str(c.key) for c in stmt.selected_columns),
            processors=tuple(
                _result_processor(c, self._dialect, json_body=json_body)
                for c in stmt.selected_columns
            ),
            slow=slow,
        )
        if len(self._prepared) >= CACHE_SIZE:
            self._prepared.clear()
        self._prepared[key] = prepared
        return prepared

    async def run(self, *reads: tuple[Prepared, Mapping[str, Any]]) -> list[list[Row]]:
        """Each prepared statement's rows with these values, all in one read."""
        statements = [(prepared.sql, prepared.params(values)) for prepared, values in reads]
        if self._sqlite is not None:
            slow = any(prepared.slow for prepared, _ in reads)
            results = await self._sqlite.run(statements, slow=slow)
        else:
            assert self._postgres is not None
            results = await self._postgres.run(statements)
        return [
            _converted(prepared.names, prepared.processors, rows)
            for (prepared, _), rows in zip(reads, results, strict=True)
        ]

    async def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._postgres is not None:
            await self._postgres.close()


def _converted(
    names: tuple[str, ...], processors: tuple[Processor, ...], rows: list[Any]
) -> list[Row]:
    """Rows as dicts (built in C), then the few columns that need it converted in place."""
    out = [dict(zip(names, row, strict=True)) for row in rows]
    for name, process in zip(names, processors, strict=True):
        if process is not None:
            for row in out:
                row[name] = process(row[name])
    return out
