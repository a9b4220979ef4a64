"""Connect to NATS with reconnects that outlive short outages."""

from __future__ import annotations

import logging

import nats
from nats.aio.client import Client

log = logging.getLogger(__name__)


async def connect(url: str, *, name: str) -> Client:
    conn: Client | None = None

    async def _error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    async def _disconnected() -> None:
        if conn is not None and conn.is_closed:
            log.info("nats connection closed")  # our own close at shutdown: nothing wrong
            return
        log.warning("nats disconnected")

    async def _reconnected() -> None:
        log.info("nats reconnected")

    conn = await nats.connect(
        # A cluster is given as a comma-separated list: nats://a:4222,nats://b:4222
        servers=[u.strip() for u in url.split(",") if u.strip()],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        error_cb=_error,
        disconnected_cb=_disconnected,
        reconnected_cb=_reconnected,
    )
    return conn
