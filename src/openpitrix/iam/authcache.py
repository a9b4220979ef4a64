"""What a token check reads about a user or API client, cached per gateway process.

A bearer token is signed, so its check needs the database only for what may have changed
since it was issued: the user's status, role, group and password cut-off, and the API
client's status. Reading those on every request cost a session and a round trip each; here
they are kept for at most `auth.check_cache_seconds` (1 s by default) and dropped sooner:

- in the process that changed them, right after the change commits (services note the change
  with `note_auth_change`; `Database.on_session_commit` runs the hook);
- in every other gateway, by a core NATS message on `op.auth.changed` sent after that commit;
- everywhere, when the entry's time is up: the bound if a message is lost (NATS disconnected).

A read that started before a change may finish after the change dropped its key; a generation
counter keeps such a read from putting the old facts back, and no request waits for such a
read (a change forgets the reads in flight).

Requests never queue behind the database for facts in use: an entry past half its time is
read again in the background (once, however many requests see it) while it is still served;
only an entry that has expired (or was dropped) is read while its request waits, and then
once for all the requests that need it. The facts are read through `db.reads` (no session).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from sqlalchemy import String, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import col

from openpitrix.bus.topology import AUTH_CHANGED_SUBJECT
from openpitrix.db.engine import Database
from openpitrix.db.reads import Reads
from openpitrix.iam.models import ApiClient, User

log = logging.getLogger(__name__)

CHANGES_KEY = "openpitrix.auth_changes"
# Expired entries are swept when the table grows past this (tokens are signed, so only real
# users and clients can make entries).
SWEEP_AT = 10_000


@dataclass(frozen=True, slots=True)
class UserFacts:
    status: str
    role: str
    group_path: str
    tokens_valid_after: datetime | None


@dataclass(frozen=True, slots=True)
class ClientFacts:
    status: str
    user_id: str


@dataclass
class AuthChanges:
    """Users and API clients a transaction changed in ways a token check looks at."""

    users: set[str]
    clients: set[str]


def note_auth_change(
    session: AsyncSession, *, user_id: str | None = None, client_id: str | None = None
) -> None:
    """Record, in the transaction, that a token check must read this user or client again once
    it commits."""
    changes = session.info.setdefault(CHANGES_KEY, AuthChanges(set(), set()))
    if user_id is not None:
        changes.users.add(user_id)
    if client_id is not None:
        changes.clients.add(client_id)


_USER_FACTS = select(
    col(User.status), col(User.role), col(User.group_path), col(User.tokens_valid_after)
)
_CLIENT_FACTS = select(col(ApiClient.status), col(ApiClient.user_id))
_USER_ID = bindparam("user_id", type_=String)
_CLIENT_ID = bindparam("client_id", type_=String)
Facts = tuple[UserFacts | None, ClientFacts | None]


class AuthCache:
    """One per gateway process, made in the lifespan."""

    def __init__(
        self,
        db: Database,
        ttl_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._ttl = ttl_seconds
        self._clock = clock
        self._users: dict[str, tuple[float, UserFacts | None]] = {}
        self._clients: dict[str, tuple[float, ClientFacts | None]] = {}
        self._generation = 0
        self._nc: Client | None = None
        self._sub: Subscription | None = None
        self._publishing: set[asyncio.Task[None]] = set()
        # Reads in flight, by (user, client); forgotten by a change (see `forget`).
        self._loading: dict[tuple[str, str | None], asyncio.Task[Facts]] = {}
        try:
            self._reads: Reads | None = db.reads
        except RuntimeError:  # an in-memory SQLite database: through a session
            self._reads = None
        db.on_session_commit(self._after_commit)

    async def start(self, nc: Client) -> None:
        """Listen for the other gateways' changes (and send ours to them)."""
        self._nc = nc
        self._sub = await nc.subscribe(AUTH_CHANGED_SUBJECT, cb=self._on_message)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        for task in list(self._publishing):
            with contextlib.suppress(Exception):
                await task
        for loading in list(self._loading.values()):
            loading.cancel()
        self._loading.clear()

    async def facts(self, user_id: str, client_id: str | None) -> Facts:
        """The user's facts (None: no such user) and, for a client's token, the client's."""
        now = self._clock()
        user_hit = self._users.get(user_id)
        client_hit = self._clients.get(client_id) if client_id is not None else None
        user_fresh = user_hit is not None and user_hit[0] > now
        client_fresh = client_id is None or (client_hit is not None and client_hit[0] > now)
        if user_fresh and client_fresh:
            assert user_hit is not None
            expires = user_hit[0] if client_hit is None else min(user_hit[0], client_hit[0])
            if expires - now < self._ttl / 2:
                self._load(user_id, client_id)  # in the background: this entry still holds
            return user_hit[1], client_hit[1] if client_hit is not None else None
        # Shielded: one waiting request going away must not cancel the others' read.
        return await asyncio.shield(self._load(user_id, client_id))

    def _load(self, user_id: str, client_id: str | None) -> asyncio.Task[Facts]:
        key = (user_id, client_id)
        task = self._loading.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._read(user_id, client_id))
            self._loading[key] = task

            def done(finished: asyncio.Task[Facts]) -> None:
                if self._loading.get(key) is finished:
                    del self._loading[key]
                if not finished.cancelled() and finished.exception() is not None:
                    # Retrieved here for a background read nobody awaits; a waiting request
                    # gets it as well (a 503 when the database is down).
                    log.debug("auth facts not read error=%s", finished.exception())

            task.add_done_callback(done)
        return task

    async def _read(self, user_id: str, client_id: str | None) -> Facts:
        generation = self._generation
        now = self._clock()
        user, client = await self._select(user_id, client_id)
        user_facts = UserFacts(*user) if user is not None else None
        client_facts = ClientFacts(*client) if client is not None else None
        if self._ttl > 0 and generation == self._generation:
            expires = self._clock() + self._ttl
            self._sweep(now)
            self._users[user_id] = (expires, user_facts)
            if client_id is not None:
                self._clients[client_id] = (expires, client_facts)
        return user_facts, client_facts

    async def _select(
        self, user_id: str, client_id: str | None
    ) -> tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]:
        if self._reads is not None:
            reads = self._reads
            user_stmt = reads.prepare(
                "auth_user_facts", lambda: _USER_FACTS.where(col(User.user_id) == _USER_ID)
            )
            if client_id is None:
                (users,) = await reads.run((user_stmt, {"user_id": user_id}))
                clients: list[dict[str, Any]] = []
            else:
                client_stmt = reads.prepare(
                    "auth_client_facts",
                    lambda: _CLIENT_FACTS.where(col(ApiClient.client_id) == _CLIENT_ID),
                )
                users, clients = await reads.run(
                    (user_stmt, {"user_id": user_id}), (client_stmt, {"client_id": client_id})
                )
            return (
                tuple(users[0].values()) if users else None,
                tuple(clients[0].values()) if clients else None,
            )
        async with self._db.read_session() as session:
            user = (await session.execute(_USER_FACTS.where(col(User.user_id) == user_id))).first()
            client = None
            if client_id is not None:
                client = (
                    await session.execute(
                        _CLIENT_FACTS.where(col(ApiClient.client_id) == client_id)
                    )
                ).first()
        return (
            tuple(user) if user is not None else None,
            tuple(client) if client is not None else None,
        )

    def forget(self, users: set[str] | list[str], clients: set[str] | list[str]) -> None:
        self._generation += 1
        # A read in flight may have seen the state before the change: later requests must
        # not wait for it (it still finishes, and the generation keeps it from being kept).
        self._loading.clear()
        for user_id in users:
            self._users.pop(user_id, None)
        for client_id in clients:
            self._clients.pop(client_id, None)

    def _sweep(self, now: float) -> None:
        for table in (self._users, self._clients):
            if len(table) >= SWEEP_AT:
                for key in [k for k, (expires, _) in table.items() if expires <= now]:
                    del table[key]

    def _after_commit(self, session: Session) -> None:
        changes: AuthChanges | None = session.info.pop(CHANGES_KEY, None)
        if changes is None:
            return
        self.forget(changes.users, changes.clients)
        if self._nc is None:
            return
        payload = orjson.dumps({"users": sorted(changes.users), "clients": sorted(changes.clients)})
        # The commit hook is synchronous; the publish only queues the message on the connection.
        task = asyncio.get_running_loop().create_task(self._publish(payload))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish(self, payload: bytes) -> None:
        assert self._nc is not None
        try:
            await self._nc.publish(AUTH_CHANGED_SUBJECT, payload)
        except Exception as exc:  # the other gateways' entries then expire on their own
            log.warning("auth change not broadcast error=%s", exc)

    async def _on_message(self, msg: Msg) -> None:
        try:
            body = orjson.loads(msg.data)
            users, clients = list(body.get("users", [])), list(body.get("clients", []))
        except (orjson.JSONDecodeError, AttributeError):
            log.warning("malformed auth change message subject=%s", msg.subject)
            return
        self.forget([str(u) for u in users], [str(c) for c in clients])
