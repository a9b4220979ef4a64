"""SQLite statements run on the event loop (db.sqlite_driver), yet a write that needs a lock
another process holds waits for it, as before, without holding up the loop; reads go on
beside that writer."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from openpitrix.db.engine import Database

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def db(tmp_path: Path) -> Database:
    path = tmp_path / "driver.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    async with database.transaction() as session:
        await session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
        await session.execute(text("INSERT INTO notes (body) VALUES ('first')"))
    yield database
    await database.dispose()


def _other_process(db: Database) -> sqlite3.Connection:
    """A connection of its own to the same file, as another process's would be."""
    return sqlite3.connect(str(db.url.database), isolation_level=None)


async def _spin(turns: int = 200) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


async def test_a_write_waits_for_a_lock_held_elsewhere_while_the_loop_runs_on(
    db: Database,
) -> None:
    holder = _other_process(db)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO notes (body) VALUES ('from elsewhere')")

    async def write() -> None:
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO notes (body) VALUES ('ours')"))

    writing = asyncio.create_task(write())
    # The loop keeps turning (this coroutine runs) while the write waits for the lock; it
    # cannot finish while the other connection holds it.
    await _spin()
    assert not writing.done()
    holder.execute("COMMIT")
    holder.close()
    await writing
    async with db.read_session() as session:
        bodies = (await session.execute(text("SELECT body FROM notes ORDER BY id"))).scalars()
        assert list(bodies) == ["first", "from elsewhere", "ours"]


async def test_a_read_goes_on_beside_a_writer_elsewhere(db: Database) -> None:
    holder = _other_process(db)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("UPDATE notes SET body = 'uncommitted'")
    try:
        async with db.read_session() as session:
            body = (await session.execute(text("SELECT body FROM notes"))).scalar()
        assert body == "first"  # the last committed state, read without waiting
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_a_write_of_this_process_is_one_at_a_time_and_each_commits(db: Database) -> None:
    async def write(n: int) -> None:
        async with db.transaction() as session:
            count = (await session.execute(text("SELECT count(*) FROM notes"))).scalar()
            await asyncio.sleep(0)  # another writer's turn, were they not one at a time
            await session.execute(
                text("INSERT INTO notes (body) VALUES (:body)"), {"body": f"{n}:{count}"}
            )

    await asyncio.gather(*(write(n) for n in range(20)))
    async with db.read_session() as session:
        bodies = list((await session.execute(text("SELECT body FROM notes"))).scalars())
    # Each writer saw every earlier writer's row: counts 1..20, each once.
    assert sorted(int(b.split(":")[1]) for b in bodies[1:]) == list(range(1, 21))


async def test_a_large_batch_is_written_whole(db: Database) -> None:
    rows = [{"body": f"row {n}"} for n in range(500)]
    async with db.transaction() as session:
        await session.execute(text("INSERT INTO notes (body) VALUES (:body)"), rows)
    async with db.read_session() as session:
        count = (await session.execute(text("SELECT count(*) FROM notes"))).scalar()
    assert count == 501
