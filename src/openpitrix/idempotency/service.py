"""Reserve a key in the request's transaction, replay the stored answer on a repeat.

The key row is written before the action runs and in the same transaction, so a crash loses
both together and two concurrent repeats cannot both act: the second waits on (PostgreSQL) or
queues behind (SQLite) the first's row, then replays it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix.errors import AppError, Conflict
from openpitrix.idempotency.models import IdempotentRequest

MAX_KEY = 200


class KeyReused(AppError):
    status_code = 422
    code = "idempotency_key_reused"


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: dict[str, Any]


def _hash(route: str, body: BaseModel | None) -> str:
    payload = body.model_dump(mode="json") if body is not None else None
    return hashlib.sha256(orjson.dumps([route, payload], option=orjson.OPT_SORT_KEYS)).hexdigest()


def request_hash(route: str, body: BaseModel | None) -> str:
    """What a repeat must match to be answered from an earlier request's key."""
    return _hash(route, body)


def check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY:
        raise Conflict(f"Idempotency-Key must be 1 to {MAX_KEY} characters", code="bad_key")


async def load_keys(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], IdempotentRequest]:
    """The remembered requests of these (owner, key) pairs, in one statement."""
    if not keys:
        return {}
    rows = await session.scalars(
        select(IdempotentRequest).where(
            tuple_(col(IdempotentRequest.owner), col(IdempotentRequest.key)).in_(set(keys))
        )
    )
    return {(row.owner, row.key): row for row in rows}


def check_same_request(first: tuple[str, str], again: tuple[str, str]) -> None:
    """422 unless a repeat (route, request hash) is the request its key was first used for."""
    if first != again:
        raise KeyReused("this Idempotency-Key was used for a different request")


def replay_of(found: IdempotentRequest, route: str, digest: str) -> Replay:
    """The answer remembered for a repeat, or 422 when the key was used for another request."""
    check_same_request((found.route, found.request_hash), (route, digest))
    return Replay(found.status_code, orjson.loads(found.response))


def remember(
    session: AsyncSession,
    owner: str,
    key: str,
    route: str,
    digest: str,
    status_code: int,
    body: BaseModel,
) -> None:
    """Add the key's row with its answer, in the transaction that acts: a crash loses both
    together. A repeat racing it in another transaction fails that one on the key."""
    session.add(
        IdempotentRequest(
            owner=owner,
            key=key,
            route=route,
            request_hash=digest,
            status_code=status_code,
            response=body.model_dump_json(),
        )
    )


async def reserve(
    session: AsyncSession, owner: str, key: str, route: str, body: BaseModel | None
) -> Replay | None:
    """The stored answer of an earlier request with this key, or None after reserving it."""
    check_key(key)
    digest = _hash(route, body)
    found = await session.get(IdempotentRequest, (owner, key))
    if found is None:
        session.add(IdempotentRequest(owner=owner, key=key, route=route, request_hash=digest))
        try:
            await session.flush()
        except IntegrityError:
            raise Conflict(
                "a request with this Idempotency-Key is in progress; retry shortly",
                code="idempotency_in_progress",
            ) from None
        return None
    return replay_of(found, route, digest)


async def record(
    session: AsyncSession, owner: str, key: str, status_code: int, body: BaseModel
) -> None:
    row = await session.get(IdempotentRequest, (owner, key))
    if row is not None:
        row.status_code = status_code
        row.response = body.model_dump_json()
