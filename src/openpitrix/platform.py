"""Process resources shared by the gateway and the workers, opened and closed as one lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from functools import cached_property
from pathlib import Path
from types import TracebackType

import httpx
from nats.aio.client import Client
from nats.js import JetStreamContext

from openpitrix.bus.connection import connect
from openpitrix.bus.embedded import EmbeddedNats
from openpitrix.bus.topology import ensure_topology
from openpitrix.crypto import SecretBox, load_secret_box
from openpitrix.db.engine import Database
from openpitrix.netguard import AddressPolicy, guarded_transport
from openpitrix.outbox.relay import OutboxRelay
from openpitrix.settings import Settings

log = logging.getLogger(__name__)


def secure_data_dir(path: Path) -> None:
    """The data dir holds the keys, the SQLite file and the NATS store: only its owner may
    enter it (0700), including one an earlier version created readable."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        try:
            path.chmod(0o700)
        except OSError as exc:  # not ours to change: say so rather than refuse to start
            log.warning("cannot make the data dir %s private: %s", path, exc)


def executor_name() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


class Platform:
    """Database, NATS (embedded when no URL is set), topology, HTTP client and outbox relay."""

    def __init__(self, settings: Settings, *, role: str) -> None:
        self.settings = settings
        self.role = role
        self.embedded_nats: EmbeddedNats | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._db: Database | None = None
        self._http: httpx.AsyncClient | None = None
        self.relay: OutboxRelay | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self._relay_db: Database | None = None
        self._stream_db: Database | None = None

    @cached_property
    def secrets(self) -> SecretBox:
        return load_secret_box(self.settings)

    @cached_property
    def address_policy(self) -> AddressPolicy:
        """Where connections to user-supplied addresses may go (repo URLs, kubeconfig servers,
        chart packages): one policy for every client this process makes."""
        return AddressPolicy.of(self.settings.network)

    @property
    def db(self) -> Database:
        assert self._db is not None, "platform not started"
        return self._db

    @property
    def stream_db(self) -> Database:
        """The event streams' own small pool (`database.stream_pool_size`): their short reads
        do not queue behind the requests holding the main pool."""
        assert self._stream_db is not None, "platform not started"
        return self._stream_db

    @property
    def nc(self) -> Client:
        assert self._nc is not None, "platform not started"
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        assert self._js is not None, "platform not started"
        return self._js

    @property
    def http(self) -> httpx.AsyncClient:
        assert self._http is not None, "platform not started"
        return self._http

    async def start(self, *, relay: bool = True) -> None:
        settings = self.settings
        if settings.indexer.allow_private_addresses is not None:
            log.warning(
                "OPENPITRIX_INDEXER__ALLOW_PRIVATE_ADDRESSES is deprecated: it now covers every "
                "outbound connection as OPENPITRIX_NETWORK__ALLOW_PRIVATE_ADDRESSES"
            )
        secure_data_dir(settings.data_dir.resolve())
        nats_url = settings.nats_url
        if nats_url is None:
            self.embedded_nats = EmbeddedNats(settings.data_dir.resolve() / "nats")
            await self.embedded_nats.start()
            nats_url = self.embedded_nats.url
        self._db = Database(settings.effective_database_url, pool=settings.database)
        # Its connections are opened on first use: only a gateway serving streams opens any.
        self._stream_db = self._db.lane(settings.database.stream_pool_size)
        self._nc = await connect(nats_url, name=f"openpitrix-{self.role}")
        self._js = self._nc.jetstream()
        await ensure_topology(self._js, settings.bus, settings.auth)
        # The client fetches URLs that users supply, so every connection it opens is vetted.
        self._http = httpx.AsyncClient(
            transport=guarded_transport(self.address_policy, verify=settings.indexer.verify_tls),
            timeout=settings.indexer.fetch_timeout_seconds,
            follow_redirects=True,
            headers={"User-Agent": "openpitrix-indexer/0.1"},
        )
        if relay:
            # The relay's connections are its own: with every pooled connection taken by
            # requests (a burst of deploys), a job's first event would otherwise wait for
            # the whole burst before it is published.
            self._relay_db = self._db.lane(settings.database.relay_pool_size)
            self.relay = OutboxRelay(
                self._relay_db,
                self._nc,
                poll_seconds=settings.outbox_poll_seconds,
                linger_seconds=settings.outbox_linger_seconds,
                wake_on=self._db,
            )
            self._relay_task = asyncio.create_task(self.relay.run(), name="outbox-relay")
            self.relay.wake()  # rows left behind by an earlier crash go out now

    async def stop(self) -> None:
        if self.relay is not None and self._relay_task is not None:
            await self.relay.stop()
            self._relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay_task
        if self._http is not None:
            await self._http.aclose()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
        for lane in (self._relay_db, self._stream_db):
            if lane is not None:
                await lane.dispose()
        if self._db is not None:
            await self._db.dispose()
        if self.embedded_nats is not None:
            # Waiting for the child to exit blocks: keep it off the event loop.
            await asyncio.to_thread(self.embedded_nats.stop)

    async def __aenter__(self) -> Platform:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
