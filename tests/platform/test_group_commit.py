"""Group commit (db.group_commit): writes that arrive together share one transaction, a refused
item answers alone, and a transaction that fails at its commit costs the others only time:
each of its items runs again alone and gets its own outcome. On the real database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix.db.engine import Database
from openpitrix.db.group_commit import GroupCommit
from openpitrix.errors import Conflict
from openpitrix.idempotency.models import IdempotentRequest

REFUSED = "refused"


@dataclass
class KeySteps:
    """Items are keys; each writes one row of idempotent_requests under one owner, whose
    primary key makes a key written twice fail at the commit."""

    owner: str
    preloads: list[int] = field(default_factory=list)  # batch sizes, as preloaded

    async def preload(self, session: AsyncSession, items: Sequence[str]) -> set[str]:
        self.preloads.append(len(items))
        rows = await session.scalars(
            select(IdempotentRequest.key).where(col(IdempotentRequest.owner) == self.owner)
        )
        return set(rows)

    async def check(self, session: AsyncSession, loaded: set[str], item: str) -> str:
        if item.startswith(REFUSED):
            raise Conflict(f"{item} is refused", code="refused")
        return item

    async def write(self, session: AsyncSession, plan: str) -> str:
        session.add(IdempotentRequest(owner=self.owner, key=plan, route="r", request_hash="h"))
        return f"wrote {plan}"


async def _keys(db: Database, owner: str) -> list[str]:
    async with db.read_session() as session:
        rows = await session.scalars(
            select(IdempotentRequest.key).where(col(IdempotentRequest.owner) == owner)
        )
        return sorted(rows)


@pytest.fixture
def steps() -> KeySteps:
    return KeySteps(owner=f"gc-{uuid.uuid4().hex[:12]}")


async def test_items_arriving_together_share_transactions_and_a_refused_one_answers_alone(
    db: Database, steps: KeySteps
) -> None:
    group = GroupCommit(db, steps)
    items = [f"k{i}" for i in range(12)] + [f"{REFUSED}-1"]
    answers = await asyncio.gather(*(group.submit(i) for i in items), return_exceptions=True)

    assert answers[:12] == [f"wrote k{i}" for i in range(12)]
    assert isinstance(answers[12], Conflict) and answers[12].code == "refused"
    assert await _keys(db, steps.owner) == sorted(f"k{i}" for i in range(12))
    # All were queued before the first transaction began: one transaction for all of them.
    assert group.batches == 1
    assert steps.preloads == [13]
    # One arriving while a transaction runs goes in the next one.
    running = asyncio.ensure_future(group.submit("k12"))
    await asyncio.sleep(0)  # queued, its transaction goes first
    assert await asyncio.gather(running, group.submit("k13")) == ["wrote k12", "wrote k13"]
    assert steps.preloads == [13, 1, 1]


async def test_a_batch_that_fails_at_its_commit_runs_each_item_again_alone(
    db: Database, steps: KeySteps
) -> None:
    group = GroupCommit(db, steps)
    await group.submit("taken")  # a row already there: writing it again fails the commit
    items = ["a", "b", "taken", f"{REFUSED}-2", "c"]
    answers = await asyncio.gather(*(group.submit(i) for i in items), return_exceptions=True)

    assert answers[0] == "wrote a" and answers[1] == "wrote b" and answers[4] == "wrote c"
    assert isinstance(answers[2], IntegrityError)
    assert isinstance(answers[3], Conflict)
    assert await _keys(db, steps.owner) == ["a", "b", "c", "taken"]
    # Once together (failed at its commit), then each of the five alone.
    assert steps.preloads == [1, 5, 1, 1, 1, 1, 1]


async def test_a_caller_that_stops_waiting_leaves_its_item_and_the_others_written(
    db: Database, steps: KeySteps
) -> None:
    group = GroupCommit(db, steps)
    first = asyncio.ensure_future(group.submit("first"))
    waiting = [asyncio.ensure_future(group.submit(k)) for k in ("x", "y", "z")]
    await asyncio.sleep(0)  # all four are queued
    waiting[1].cancel()  # its request went away
    assert await first == "wrote first"
    assert await asyncio.gather(waiting[0], waiting[2]) == ["wrote x", "wrote z"]
    await group.close()
    # The item was already queued: its write is not undone (like a request cut off after
    # its commit); the others are not held back by it.
    assert await _keys(db, steps.owner) == ["first", "x", "y", "z"]
