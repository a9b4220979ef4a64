"""Rows read by key (db.keyed_reads): lookups that arrive together share one statement and
each gets its own row, or None for a key with none. On the real database."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select
from sqlmodel import col

from openpitrix.db.engine import Database
from openpitrix.db.keyed_reads import KeyedReads
from openpitrix.idempotency.models import IdempotentRequest


async def test_lookups_arriving_together_share_a_statement_and_each_gets_its_row(
    db: Database,
) -> None:
    owner = f"kr-{uuid.uuid4().hex[:12]}"
    async with db.transaction() as session:
        for key in ("a", "b", "c"):
            session.add(
                IdempotentRequest(owner=owner, key=key, route=f"route-{key}", request_hash="h")
            )
    statement = select(col(IdempotentRequest.key), col(IdempotentRequest.route)).where(
        col(IdempotentRequest.owner) == owner
    )
    rows = KeyedReads[str](db.reads, statement, statement.selected_columns["key"])

    got = await asyncio.gather(*(rows.get(k) for k in ("a", "missing", "c", "a", "b")))

    assert got == [
        {"key": "a", "route": "route-a"},
        None,
        {"key": "c", "route": "route-c"},
        {"key": "a", "route": "route-a"},
        {"key": "b", "route": "route-b"},
    ]
    assert rows.statements == 1
    # Alone, a lookup is one statement of its own; a later one sees what was written since.
    assert await rows.get("b") == {"key": "b", "route": "route-b"}
    async with db.transaction() as session:
        session.add(IdempotentRequest(owner=owner, key="d", route="route-d", request_hash="h"))
    assert await rows.get("d") == {"key": "d", "route": "route-d"}
    assert rows.statements == 3


async def test_a_batch_beyond_its_key_limit_goes_in_several_statements(db: Database) -> None:
    owner = f"kr-{uuid.uuid4().hex[:12]}"
    statement = select(col(IdempotentRequest.key)).where(col(IdempotentRequest.owner) == owner)
    rows = KeyedReads[str](db.reads, statement, statement.selected_columns["key"], max_keys=4)
    assert await asyncio.gather(*(rows.get(f"k{i}") for i in range(10))) == [None] * 10
    assert rows.statements == 3
