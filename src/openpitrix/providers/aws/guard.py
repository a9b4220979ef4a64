"""aiobotocore's HTTP session made to connect only through the address guard.

aiobotocore sends every request of a client through one `http_session_cls` instance (named in
its `AioConfig`), which builds an aiohttp `TCPConnector` per proxy URL. Our subclass builds a
`netguard.GuardedConnector` instead (its resolver vets every name; it checks IP literals, which
aiohttp never resolves) and never uses a proxy, through which the address reached could not be
checked. The policy is bound by making one subclass per policy, because aiobotocore constructs
the session itself from the class.
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
from aiobotocore.httpsession import AIOHTTPSession

from openpitrix.netguard import AddressPolicy, GuardedConnector


class GuardedAioHttpSession(AIOHTTPSession):
    """An aiobotocore HTTP session whose connections all go through `GuardedConnector`."""

    policy: AddressPolicy = AddressPolicy()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No proxy, whatever the environment or the config say (see the module docstring).
        kwargs["proxies"] = {}
        kwargs["proxies_config"] = None
        super().__init__(*args, **kwargs)

    def _create_connector(self, proxy_url: str | None) -> aiohttp.TCPConnector:
        if proxy_url:
            raise RuntimeError("the guarded AWS session does not connect through proxies")
        return GuardedConnector(
            self.policy,
            ssl_context=ssl.create_default_context(),
            limit=int(getattr(self, "_max_pool_connections", 10)),
        )


def guarded_session_cls(policy: AddressPolicy) -> type[GuardedAioHttpSession]:
    """The session class for aiobotocore's `AioConfig(http_session_cls=...)` under `policy`."""
    return type("GuardedAioHttpSession", (GuardedAioHttpSession,), {"policy": policy})
