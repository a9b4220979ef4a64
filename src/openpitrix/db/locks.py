"""Transaction-scoped named locks, for serializing decisions that span several rows."""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


def _key(name: str) -> int:
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_name(session: AsyncSession, name: str) -> None:
    """Hold a lock on `name` until the session's transaction ends.

    PostgreSQL: an advisory transaction lock, so two processes deciding about the same name
    queue here. SQLite: nothing to do, its write transactions (BEGIN IMMEDIATE) are serialized.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _key(name)})


def writers_serialized(session: AsyncSession) -> bool:
    """Whether a write transaction (`Database.transaction`) excludes every other writer from
    its first statement on: SQLite's BEGIN IMMEDIATE does, so what it read stays as read and a
    row lock taken later would re-read the same row; PostgreSQL locks row by row."""
    return session.get_bind().dialect.name == "sqlite"
