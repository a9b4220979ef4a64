"""Liveness and readiness probes (no token needed), with an optional outbox detail."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, Field

from openpitrix.api.deps import PlatformDep
from openpitrix.api.errors import ErrorBody, error_response
from openpitrix.api.routing import DomainRouter
from openpitrix.bus.topology import redact_owner
from openpitrix.outbox.relay import parked_messages

router = DomainRouter(tags=["health"])


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


class ParkedOutboxMessage(BaseModel):
    msg_id: str
    subject: str = Field(description="The subject, with an event's owner token shown as `*`.")
    error: str
    parked_at: datetime


class OutboxHealth(BaseModel):
    parked: int
    latest: list[ParkedOutboxMessage]


class Readiness(Health):
    outbox: OutboxHealth | None = None


@router.get("/healthz", operation_id="healthz")
async def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


async def _outbox_health(platform: PlatformDep) -> OutboxHealth:
    async with platform.db.read_session() as session:
        total, latest = await parked_messages(session)
    return OutboxHealth(
        parked=total,
        latest=[
            ParkedOutboxMessage(
                msg_id=m.msg_id,
                subject=redact_owner(m.subject),
                error=m.error,
                parked_at=m.parked_at,
            )
            for m in latest
        ],
    )


@router.get(
    "/readyz",
    operation_id="readyz",
    responses={
        503: {"model": ErrorBody, "description": "Not ready: `details.checks` names what is down"}
    },
    response_model_exclude_none=True,
)
async def readyz(
    platform: PlatformDep,
    detail: Annotated[
        bool,
        Query(
            description="Also report the outbox: how many messages were parked because they can "
            "never be published, and the latest of them with their errors."
        ),
    ] = False,
) -> Readiness:
    """The database and NATS (JetStream) answer."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(platform.db.ping(), 3)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        await asyncio.wait_for(platform.js.account_info(), 3)
        checks["nats"] = "ok"
    except Exception as exc:
        checks["nats"] = f"error: {type(exc).__name__}"
    if any(v != "ok" for v in checks.values()):
        return error_response(503, "not_ready", "a dependency is down", {"checks": checks})  # type: ignore[return-value]
    # Parked messages do not make the process unready: it publishes everything else.
    outbox = await asyncio.wait_for(_outbox_health(platform), 3) if detail else None
    return Readiness(status="ok", checks=checks, outbox=outbox)
