"""Reserve a key in the request's transaction, replay the stored answer on a repeat.

The key row is written before the action runs and in the same transaction, so a crash loses
both together and two concurrent repeats cannot both act: the second waits on (PostgreSQL) or
queues behind (SQLite) the first's row, then replays it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

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


async def reserve(
    session: AsyncSession, owner: str, key: str, route: str, body: BaseModel | None
) -> Replay | None:
    """The stored answer of an earlier request with this key, or None after reserving it."""
    if not key or len(key) > MAX_KEY:
        raise Conflict(f"Idempotency-Key must be 1 to {MAX_KEY} characters", code="bad_key")
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
    if found.route != route or found.request_hash != digest:
        raise KeyReused("this Idempotency-Key was used for a different request")
    return Replay(found.status_code, orjson.loads(found.response))


async def record(
    session: AsyncSession, owner: str, key: str, status_code: int, body: BaseModel
) -> None:
    row = await session.get(IdempotentRequest, (owner, key))
    if row is not None:
        row.status_code = status_code
        row.response = body.model_dump_json()
