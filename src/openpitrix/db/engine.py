"""Async engine and session factory, with SQLite tuned for several processes sharing one file."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Table, event, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.util import await_

from openpitrix.db.reads import Reads
from openpitrix.db.sqlite_driver import OneHopConnection, one_hop_dbapi
from openpitrix.settings import DatabaseSettings

OUTBOX_WAKE_KEY = "openpitrix.outbox_written"
READ_ONLY = "openpitrix_read_only"
OUTBOX_CHANNEL = "openpitrix_outbox"
# Rows a transaction inserts as it commits, one statement per table (`insert_at_commit`).
PENDING_INSERTS_KEY = "openpitrix.pending_inserts"


class _WritesAtCommit(Session):
    """A session of `Database`: writes the rows `insert_at_commit` collected as it commits."""


def insert_at_commit(session: AsyncSession, table: Table, row: dict[str, Any]) -> bool:
    """Collect `row` for `table`, inserted with the transaction's other rows of that table in
    one statement as the transaction commits (before the commit, inside it: rows and commit
    stay atomic), without an ORM object: rows written often, never read back in the writing
    transaction (outbox messages). False when this session cannot (not one of a `Database`):
    the caller adds the row its own way."""
    sync = session.sync_session
    if not isinstance(sync, _WritesAtCommit):
        return False
    if sync.get_transaction() is None:
        # The rows belong to a transaction: begun here if no statement has begun it yet, a
        # rollback drops them (after_soft_rollback) instead of leaving them to the next commit.
        sync.begin()
    pending: dict[Table, list[dict[str, Any]]] = session.info.setdefault(PENDING_INSERTS_KEY, {})
    pending.setdefault(table, []).append(row)
    return True


async def write_pending(session: AsyncSession) -> None:
    """Insert the rows collected so far now (a read of their table in the same transaction
    must see them)."""
    await session.run_sync(_insert_pending)


def _insert_pending(session: Session) -> None:
    pending: dict[Table, list[dict[str, Any]]] | None = session.info.pop(PENDING_INSERTS_KEY, None)
    for table, rows in (pending or {}).items():
        session.connection().execute(insert(table), rows)


def prepare_sqlite_file(path: Path) -> None:
    """Create the database file private (0600) before SQLite opens it, and tighten one that an
    earlier version left readable. SQLite gives the -wal and -shm files it creates the mode of
    the database file; ones already there are tightened too."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class Database:
    """Owns the engine and the session factory of one process (created in a lifespan)."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        pool: DatabaseSettings | None = None,
        pool_size: int | None = None,
    ) -> None:
        """`pool_size` overrides the settings' (a lane of its own: `Database.lane`)."""
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        pool = pool or DatabaseSettings()
        self._pool_settings = pool
        kwargs: dict[str, Any] = {
            "echo": echo,
            "json_serializer": _json_dumps,
            "json_deserializer": orjson.loads,
        }
        file_db = self.dialect != "sqlite" or self.url.database not in (None, "", ":memory:")
        if self.dialect == "sqlite":
            if file_db:
                prepare_sqlite_file(Path(self.url.database or ""))
            kwargs["connect_args"] = {"timeout": 60}
            if self.url.get_driver_name() == "aiosqlite":
                # One hand-off to SQLite's thread per statement, not four (db.sqlite_driver).
                kwargs["module"] = one_hop_dbapi()
        if file_db:
            # One pool of long-lived connections, no overflow by default: under load, overflow
            # connections were opened and closed per burst (on SQLite each one a thread and
            # its PRAGMAs, on PostgreSQL a login), a tenth of the gateway's time.
            # Liveness without a round trip per checkout (pre-ping): a connection the server
            # dropped, e.g. when PostgreSQL restarts, fails the statement that meets it; the
            # driver's error counts as a disconnect, so SQLAlchemy invalidates that connection
            # and every other one opened before it, the request answers 503 with Retry-After
            # (api.errors), and the next checkouts connect anew. pool_recycle retires
            # connections before server-side or proxy idle timeouts would cut them.
            kwargs.update(
                pool_size=pool_size or pool.pool_size,
                max_overflow=0 if pool_size else pool.max_overflow,
                pool_timeout=pool.pool_timeout_seconds,
                pool_recycle=pool.pool_recycle_seconds,
                pool_pre_ping=pool.pool_pre_ping,
            )
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.dialect == "sqlite":
            _tune_sqlite(self.engine)
        # The hot lists' reads, beside the engine's pool (see db.reads); a private in-memory
        # SQLite database exists only inside its one connection, so it has none.
        self._reads = (
            Reads(
                url,
                self.engine.dialect,
                pool_size=pool_size or pool.read_pool_size,  # a lane's: its own size
                recycle_seconds=pool.pool_recycle_seconds,
            )
            if file_db
            else None
        )
        self._commit_hooks: list[Callable[[], None]] = []
        self._session_commit_hooks: list[Callable[[Session], None]] = []
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

        class _Session(_WritesAtCommit):
            pass

        event.listen(_Session, "before_commit", _insert_pending)
        # Rows collected in a transaction that rolled back are not written by the next one.
        event.listen(
            _Session,
            "after_soft_rollback",
            lambda session, _previous: session.info.pop(PENDING_INSERTS_KEY, None),
        )

        if self.dialect == "postgresql":
            # Relays of other processes LISTEN on this channel; NOTIFY is delivered on commit.
            # A process running its own relay wakes it directly instead: waking every relay
            # of every process on every commit made them all contend for the relay lock.
            def _before_commit(session: Session) -> None:
                if session.info.get(OUTBOX_WAKE_KEY) and not self._commit_hooks:
                    session.execute(text(f"NOTIFY {OUTBOX_CHANNEL}"))

            event.listen(_Session, "before_commit", _before_commit)

        def _after_commit(session: Session) -> None:
            if session.info.pop(OUTBOX_WAKE_KEY, False):
                for hook in self._commit_hooks:
                    hook()
            for session_hook in self._session_commit_hooks:
                session_hook(session)

        event.listen(_Session, "after_commit", _after_commit)
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=_Session
        )
        self.read_sessionmaker = async_sessionmaker(
            self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )

    def on_outbox_commit(self, hook: Callable[[], None]) -> None:
        """Call `hook` after every commit that wrote outbox rows (wakes the local relay)."""
        self._commit_hooks.append(hook)

    def on_session_commit(self, hook: Callable[[Session], None]) -> None:
        """Call `hook` with the session after each of its commits: what the transaction noted
        in `session.info` is now visible to every other connection."""
        self._session_commit_hooks.append(hook)

    def session(self) -> AsyncSession:
        return self.sessionmaker()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write transaction, committed on success and rolled back on error.

        On SQLite the process's writers queue on an asyncio lock: waiting in SQLite's busy
        handler instead would sleep in 1-25 ms steps while the lock is free again long before.
        """
        async with (
            self._write_lock or contextlib.nullcontext(),
            self.sessionmaker() as session,
            session.begin(),
        ):
            yield session

    def read_session(self) -> AsyncSession:
        """For reads only: on SQLite it neither waits for nor blocks writers."""
        return self.read_sessionmaker()

    def lane(self, pool_size: int) -> Database:
        """Another engine on the same database with a small pool of its own, for work that
        must not queue for a connection behind this one's requests (the outbox relay). Its
        sessions run no commit hooks: what it writes wakes no relay."""
        return Database(
            self.url.render_as_string(hide_password=False),
            pool=self._pool_settings,
            pool_size=pool_size,
        )

    @property
    def reads(self) -> Reads:
        """Hot reads without a session (db.reads): one statement's rows, or several in one
        snapshot on SQLite."""
        if self._reads is None:
            raise RuntimeError("an in-memory SQLite database has no separate read connections")
        return self._reads

    def asyncpg_dsn(self) -> str:
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every pooled connection (the next use connects anew)."""
        if self._reads is not None:
            await self._reads.close()
        await self.engine.dispose()


def _set_wal(cur: Any) -> None:
    """Switch the file to WAL (it stays so). Several processes opening a new file at once race
    for that switch, and SQLite answers the losers "database is locked" at once instead of
    waiting (busy_timeout does not cover it): they try again shortly."""
    for attempt in range(WAL_ATTEMPTS):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:
            if "locked" not in str(exc) or attempt == WAL_ATTEMPTS - 1:
                raise
            # In the driver's greenlet: wait without blocking the event loop.
            await_(asyncio.sleep(0.05 * (attempt + 1)))


WAL_ATTEMPTS = 20


def _tune_sqlite(engine: AsyncEngine) -> None:
    # Several processes (gateway, workers) may share the file. WAL lets readers run beside the
    # writer; BEGIN IMMEDIATE takes the write lock up front so two writers queue on busy_timeout
    # instead of failing with SQLITE_BUSY when a read transaction later tries to write.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not isinstance(dbapi_conn, OneHopConnection):
            # (A OneHopConnection waits for locks only off the loop, as long as the
            # engine's `timeout`: db.sqlite_driver.)
            cur.execute("PRAGMA busy_timeout=60000")
        _set_wal(cur)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
