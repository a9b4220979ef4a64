"""Liveness and readiness probes (no token needed)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel

from openpitrix.api.deps import PlatformDep
from openpitrix.api.errors import ErrorBody, error_response

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


@router.get("/healthz", operation_id="healthz")
async def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get(
    "/readyz",
    operation_id="readyz",
    responses={
        503: {"model": ErrorBody, "description": "Not ready: `details.checks` names what is down"}
    },
)
async def readyz(platform: PlatformDep) -> Health:
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
    return Health(status="ok", checks=checks)
