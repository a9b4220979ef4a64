"""Outbound connections that refuse loopback, private and other internal addresses (SSRF guard).

One policy for every connection to an address a user supplied: httpx clients (repo indexes,
chart packages) through `guarded_transport`, aiohttp sessions (the Kubernetes API client)
through `guarded_session`. Both refuse with `AddressNotAllowed`, shown as `address_not_allowed`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import aiohttp
import httpcore
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from openpitrix.settings import NetworkSettings

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_RFC1918: Final = tuple(
    ipaddress.IPv4Network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_UNIQUE_LOCAL: Final = ipaddress.IPv6Network("fc00::/7")
_SHARED: Final = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")

ADDRESS_NOT_ALLOWED: Final = "address_not_allowed"
"""The error code every refusal is shown with, whichever client made the connection."""


class AddressNotAllowed(httpcore.ConnectError):
    """A connection was refused before it was opened: the host is (or resolves to) an address
    the policy does not allow.

    A ConnectError so that httpx reports it as `httpx.ConnectError` (with this as the cause) and
    callers that know nothing of the guard still see an ordinary connection failure. Through
    aiohttp it arrives as itself: aiohttp wraps only OSErrors from its resolver.
    """

    def __init__(self, host: str, address: IPAddress, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        # The resolved address of a name stays out of the message: it is shown to whoever asked
        # for the URL, and should not turn the guard into an oracle for internal DNS.
        if _is_literal(host):
            text = f"{host} is not a public address ({reason})"
        else:
            text = f"{host} resolves to a non-public address ({reason})"
        super().__init__(text)


def refusal_in(exc: BaseException) -> AddressNotAllowed | None:
    """The guard's refusal behind a client error (httpx wraps it twice), if that is what it is."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, AddressNotAllowed):
            return current
        current = current.__cause__ or current.__context__
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why `address` is not a public destination ("loopback", "private", ...), or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = refusal_reason(embedded)
            if inner is not None:
                return f"{inner}, IPv4 embedded in IPv6"
            if address.sixtofour is None:
                # A mapped or NAT64 address reaches exactly its IPv4 address, so that decides
                # (the IPv6 range itself counts as reserved).
                return None
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address):
        if any(address in net for net in _RFC1918):
            return "private"
        if address in _SHARED:
            return "shared carrier-grade NAT"
    else:
        if address in _UNIQUE_LOCAL:
            return "private"
        if address.is_site_local:
            return "site-local"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "special-purpose"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which destinations outbound fetches may connect to."""

    allow_private: bool = False
    """Allow every address: loopback, private, link-local and the rest (local use only)."""
    allowed_networks: tuple[IPNetwork, ...] = ()
    """Exceptions to the refusal, e.g. one internal mirror; matched on the connected address."""

    @classmethod
    def of(cls, network: NetworkSettings) -> AddressPolicy:
        """The policy the settings ask for."""
        return cls(allow_private=network.allow_private_addresses)

    def refusal(self, address: IPAddress) -> str | None:
        """Why a connection to `address` is refused, or None if it may go ahead."""
        if self.allow_private:
            return None
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        for candidate in candidates:
            if any(candidate in net for net in self.allowed_networks):
                return None
        return refusal_reason(address)

    def check(self, host: str, addresses: Iterable[IPAddress]) -> None:
        """Raise AddressNotAllowed if any address of `host` is refused.

        Any refused address refuses the host: a name that mixes public and internal addresses
        is how rebinding attacks look, and trying only "the good ones" would make the outcome
        depend on resolver ordering.
        """
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                log.warning("netguard refused host=%s address=%s reason=%s", host, address, reason)
                raise AddressNotAllowed(host, address, reason)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves each host itself, vets every address, and connects to the vetted address only.

    Checking at connect time (not on the URL beforehand) is what defeats DNS rebinding and
    covers redirects: nothing resolves the name a second time, and every hop comes through here.
    TLS still verifies the hostname, which httpcore passes to `start_tls` separately.
    """

    def __init__(
        self, policy: AddressPolicy, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        addresses = await self._resolve(host, port, timeout)
        self._policy.check(host, addresses)
        last_error: httpcore.ConnectError | None = None
        for address in addresses:
            remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last_error = exc
        assert last_error is not None  # _resolve never returns an empty list
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # A socket path is a local destination by definition; nothing here should reach one.
        raise httpcore.ConnectError("the guarded transport does not connect to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    async def _resolve(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(
                    host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            # The same error httpcore's own backend raises for a name that does not resolve.
            raise httpcore.ConnectError(str(exc)) from exc
        addresses: list[IPAddress] = []
        for _family, _type, _proto, _canonname, sockaddr in infos:
            address = ipaddress.ip_address(sockaddr[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        return addresses


def guarded_transport(
    policy: AddressPolicy,
    *,
    verify: ssl.SSLContext | bool = True,
    limits: httpx.Limits | None = None,
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection (redirect hops included) goes through
    `GuardedBackend`. Environment proxies are not used: through a proxy, the address actually
    reached could not be checked."""
    limits = limits if limits is not None else httpx.Limits()
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits)
    # httpx (0.28) has no public way to hand its connection pool a network backend (proposed in
    # encode/httpx#3749), so the pool it delegates to is replaced by one built with ours. This is
    # the one use of a private attribute; if httpx ever renames it, refuse to start rather than
    # silently run unguarded.
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError("httpx.AsyncHTTPTransport no longer exposes its pool as `_pool`")
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(policy),
    )
    return transport


# --------------------------------------------------------------------------------------- aiohttp


class GuardedResolver(AbstractResolver):
    """Resolves through aiohttp's default resolver and refuses names with a disallowed address.

    aiohttp connects only to what its resolver returns (and caches only that), so vetting here
    is checking at connect time: rebinding and redirects are covered as with httpx."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        self._policy.check(host, [ipaddress.ip_address(item["host"]) for item in found])
        return found

    async def close(self) -> None:
        await self._inner.close()


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector whose every connection is vetted by the policy.

    aiohttp never asks the resolver about IP literals, so those are checked here; proxies are
    refused, because through one the address actually reached could not be checked."""

    def __init__(self, policy: AddressPolicy, *, ssl_context: ssl.SSLContext, limit: int) -> None:
        super().__init__(resolver=GuardedResolver(policy), ssl=ssl_context, limit=limit)
        self._policy = policy

    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,
    ) -> Connection:
        if req.proxy is not None:
            raise aiohttp.ClientConnectionError(
                "the guarded connector does not connect through proxies"
            )
        host = (req.url.raw_host or "").strip("[]")
        if _is_literal(host):
            self._policy.check(host, [ipaddress.ip_address(host)])
        return await super().connect(req, traces, timeout)


def guarded_session(
    policy: AddressPolicy,
    *,
    ssl_context: ssl.SSLContext,
    limit: int = 100,
    read_bufsize: int = 2**16,
) -> aiohttp.ClientSession:
    """An aiohttp session whose connections go through `GuardedConnector`; environment
    proxies are ignored (trust_env off) for the reason the connector refuses them."""
    connector = GuardedConnector(policy, ssl_context=ssl_context, limit=limit)
    return aiohttp.ClientSession(connector=connector, trust_env=False, read_bufsize=read_bufsize)
