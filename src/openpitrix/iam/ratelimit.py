"""Login attempt limits per account and per client address, counted in a shared NATS KV bucket."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import math
import time
from dataclasses import dataclass

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from openpitrix.iam.service import normalize_email
from openpitrix.settings import AuthSettings, Settings

log = logging.getLogger(__name__)

# Budget for all the KV round trips of one login; past it the login goes on uncounted.
KV_TIMEOUT_SECONDS = 2.0
# Compare-and-set rounds on one key. Every round one writer wins, so only a burst of this many
# attempts at once on the same key can exhaust them.
CAS_ROUNDS = 10


@dataclass(frozen=True)
class LoginLimited:
    """Refuse the attempt without checking the password, for `retry_after` whole seconds."""

    retry_after: int


@dataclass(frozen=True)
class LoginAdmitted:
    """Go on. `account_window` is when the window holding this attempt's count began (None
    when it was not counted), so `forgive` takes it back from that window only."""

    account_key: str | None = None
    account_window: int | None = None


@dataclass(frozen=True)
class _Rule:
    scope: str
    limit: int
    window_seconds: int


@dataclass(frozen=True)
class _Window:
    """A key's value: a fixed window's start and how many attempts it holds."""

    start_ms: int
    count: int

    def encode(self) -> bytes:
        return json.dumps({"start_ms": self.start_ms, "count": self.count}).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> _Window | None:
        try:
            data = json.loads(raw or b"")
            return cls(int(data["start_ms"]), int(data["count"]))
        except (ValueError, TypeError, KeyError):
            return None  # unreadable: counted as no window, so the next write replaces it


def _key(scope: str, value: str) -> str:
    # Hashed: KV keys allow only [-/_=.a-zA-Z0-9], and the bucket need not hold emails.
    return f"{scope}.{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def address_group(address: str) -> str:
    """The unit an address is counted in: an IPv4 address, or an IPv6 /64, since one host
    usually holds a whole /64 and could otherwise take a fresh budget per address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP: a test client's name, say
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _now_ms() -> int:
    # Wall clock, not monotonic: windows are shared by replicas, so their clocks must agree
    # (NTP); a skew only shifts when a window ends by that much.
    return int(time.time() * 1000)


class LoginLimiter:
    """Counts password logins before they are checked; shared by replicas through one bucket.

    Account counts are taken before the password is verified and given back on success, so the
    counter holds failures, yet a burst of concurrent guesses cannot all pass while the first
    ones are still being verified.
    """

    def __init__(self, kv: KeyValue, settings: AuthSettings) -> None:
        self._kv = kv
        self._account = _Rule(
            "account", settings.login_failures_per_account, settings.login_account_window_seconds
        )
        self._address = _Rule(
            "address", settings.login_attempts_per_address, settings.login_address_window_seconds
        )

    @classmethod
    async def open(cls, js: JetStreamContext, settings: Settings) -> LoginLimiter:
        """Bind to the bucket ensure_topology declared."""
        return cls(await js.key_value(settings.bus.login_limits_bucket), settings.auth)

    async def admit(self, username: str, address: str | None) -> LoginAdmitted | LoginLimited:
        """Count one password login against its client address, then its account.

        The account is counted whether it exists or not, so a refusal reveals nothing about it.
        An unknown address (no client in the request) has no per-address count: lumping all
        such callers together would let one of them lock out the rest.
        """
        account_key = _key(self._account.scope, normalize_email(username))
        try:
            async with asyncio.timeout(KV_TIMEOUT_SECONDS):
                if address is not None and self._address.limit > 0:
                    key = _key(self._address.scope, address_group(address))
                    taken = await self._take(key, self._address)
                    if isinstance(taken, LoginLimited):
                        return taken
                if self._account.limit == 0:
                    return LoginAdmitted()
                taken = await self._take(account_key, self._account)
        except (nats.errors.Error, TimeoutError) as exc:
            # Fail open: failing closed would lock everyone out while NATS is down, which is
            # worse than a spell without limits; argon2's cost per guess still slows a guesser,
            # and the warning tells operators the limits are off.
            log.warning("login limits unavailable, admitting uncounted: %r", exc)
            return LoginAdmitted()
        if isinstance(taken, LoginLimited):
            return taken
        return LoginAdmitted(account_key, taken)

    async def forgive(self, admitted: LoginAdmitted) -> None:
        """Give back a successful login's account count.

        Not a reset: a success proves the password is known, not that earlier failures were
        the owner's, and a reset would hand a guesser a fresh budget each time the owner logs
        in. The per-address count is never given back: it limits attempts, failed or not.
        """
        if admitted.account_key is None or admitted.account_window is None:
            return
        try:
            async with asyncio.timeout(KV_TIMEOUT_SECONDS):
                for _ in range(CAS_ROUNDS):
                    entry = await self._kv.get(admitted.account_key)
                    current = _Window.decode(entry.value)
                    if (
                        current is None
                        or current.start_ms != admitted.account_window
                        or current.count == 0
                    ):
                        return  # a newer window began: this attempt is no longer in it
                    given_back = _Window(current.start_ms, current.count - 1)
                    try:
                        await self._kv.update(
                            admitted.account_key, given_back.encode(), last=entry.revision
                        )
                        return
                    except KeyWrongLastSequenceError:
                        continue
        except KeyNotFoundError:
            return
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("login limits unavailable, success not given back: %r", exc)

    async def _take(self, key: str, rule: _Rule) -> int | LoginLimited:
        """Add one attempt to the key's window (a new one if none is open): the window's start,
        or LoginLimited when it is full. Compare-and-set, so no concurrent count is lost."""
        window_ms = rule.window_seconds * 1000
        for _ in range(CAS_ROUNDS):
            now = _now_ms()
            try:
                entry: KeyValue.Entry | None = await self._kv.get(key)
            except KeyNotFoundError:
                entry = None
            current = _Window.decode(entry.value) if entry is not None else None
            if current is None or now >= current.start_ms + window_ms:
                counted = _Window(now, 1)
            elif current.count >= rule.limit:
                # Retry-After is whole seconds, rounded up so a retry at once never lands early.
                seconds = math.ceil((current.start_ms + window_ms - now) / 1000)
                return LoginLimited(min(max(seconds, 1), rule.window_seconds))
            else:
                counted = _Window(current.start_ms, current.count + 1)
            try:
                if entry is None:
                    await self._kv.create(key, counted.encode())
                else:
                    await self._kv.update(key, counted.encode(), last=entry.revision)
            except KeyWrongLastSequenceError:
                continue  # another attempt, maybe on another replica, counted first: re-read
            if counted.count == rule.limit:
                log.info(
                    "login limit reached scope=%s key=%s window_seconds=%d",
                    rule.scope,
                    key,
                    rule.window_seconds,
                )
            return counted.start_ms
        # Losing every round takes a flood of concurrent attempts on this one key. Refusing
        # (rather than admitting uncounted) keeps such a flood from being a way past the limit.
        log.warning("login limit contended scope=%s key=%s", rule.scope, key)
        return LoginLimited(1)
