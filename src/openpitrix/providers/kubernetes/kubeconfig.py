"""Kubeconfigs as credentials: parsed, checked for safety, turned into API clients.

A kubeconfig is user input to a shared server, so only self-contained ones are accepted: inline
certificates and tokens. `exec` and `auth-provider` plugins would run programs on our hosts,
and file references (`certificate-authority`, `tokenFile`, ...) would read our files.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import aiohttp
import yaml_rs

from openpitrix.netguard import (
    ADDRESS_NOT_ALLOWED,
    AddressNotAllowed,
    AddressPolicy,
    guarded_session,
)
from openpitrix.providers.base import CredentialInvalid, EndpointRefused

# Parsing a kubeconfig (credentials created through the API) needs no client library: it is
# imported by the functions that build a client (see `provider._client_library`).
if TYPE_CHECKING:
    from kubernetes_asyncio import client

MAX_BYTES = 256 * 1024
_FILE_KEYS = {
    "certificate-authority",
    "client-certificate",
    "client-key",
    "tokenFile",
    "token-file",
}
_PROGRAM_KEYS = {"exec", "auth-provider"}


def _named(doc: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    for item in doc.get(section) or []:
        if isinstance(item, dict) and item.get("name") == name:
            inner = item.get(section[:-1])
            if isinstance(inner, dict):
                return inner
    raise CredentialInvalid(f"kubeconfig has no {section[:-1]} named {name!r}")


def parse_kubeconfig(content: str) -> tuple[dict[str, Any], str]:
    """The kubeconfig document and the API server URL of its current context."""
    if len(content.encode()) > MAX_BYTES:
        raise CredentialInvalid(f"kubeconfig is larger than {MAX_BYTES // 1024} KiB")
    try:
        doc = yaml_rs.loads(content)
    except Exception as exc:  # yaml_rs raises its own error types
        raise CredentialInvalid(f"kubeconfig is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind", "Config") != "Config":
        raise CredentialInvalid("kubeconfig must be a YAML mapping of kind Config")
    current = doc.get("current-context")
    if not isinstance(current, str) or not current:
        raise CredentialInvalid("kubeconfig has no current-context")
    context = _named(doc, "contexts", current)
    cluster = _named(doc, "clusters", str(context.get("cluster", "")))
    user = _named(doc, "users", str(context.get("user", ""))) if context.get("user") else {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise CredentialInvalid("kubeconfig cluster has no http(s) server URL")
    if "proxy-url" in cluster:
        # Through a proxy the address actually reached could not be checked by the guard.
        raise CredentialInvalid(
            "kubeconfig uses proxy-url; the API server must be reached directly",
            code="credential_unsupported",
        )
    for section in (cluster, user):
        bad = sorted((_FILE_KEYS | _PROGRAM_KEYS) & set(section))
        if bad:
            raise CredentialInvalid(
                f"kubeconfig uses {', '.join(bad)}; only inline credentials are accepted "
                "(certificate-authority-data, client-certificate-data, client-key-data, token)",
                code="credential_unsupported",
            )
    return doc, server


async def api_config(doc: dict[str, Any]) -> client.Configuration:
    """The client configuration of the kubeconfig's current context."""
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    await config.load_kube_config_from_dict(config_dict=doc, client_configuration=configuration)
    return configuration


async def guarded_api_client(
    configuration: client.Configuration, policy: AddressPolicy
) -> client.ApiClient:
    """An API client whose connections go through the address guard: the server URL is user
    input, so it may not reach what the policy refuses (loopback, cloud metadata, ...)."""
    from kubernetes_asyncio import client

    api = client.ApiClient(configuration=configuration)
    rest = api.rest_client
    # The library builds its aiohttp session (a plain connector, environment proxies trusted)
    # inside ApiClient; it is swapped for a guarded one before any request, keeping the TLS
    # context the library made from the kubeconfig. If the library moves these, refuse to run
    # rather than run unguarded.
    unguarded = getattr(rest, "pool_manager", None)
    connector = getattr(unguarded, "connector", None)
    ssl_context = getattr(connector, "_ssl", None)
    if not isinstance(unguarded, aiohttp.ClientSession) or not isinstance(
        ssl_context, ssl.SSLContext
    ):
        await api.close()
        raise RuntimeError("kubernetes_asyncio no longer exposes its aiohttp session as expected")
    assert connector is not None
    rest.pool_manager = guarded_session(
        policy,
        ssl_context=ssl_context,
        limit=connector.limit,
        read_bufsize=2**21,  # the library's value: watch events may carry large objects
    )
    await unguarded.close()
    return api


@contextlib.contextmanager
def refusals_as_provider_errors() -> Iterator[None]:
    """The guard's refusal as the provider error every caller knows, never retried: the
    address will not become allowed by trying again."""
    try:
        yield
    except AddressNotAllowed as exc:
        raise EndpointRefused(ADDRESS_NOT_ALLOWED, f"kubeconfig server refused: {exc}") from None


@contextlib.asynccontextmanager
async def api_client(doc: dict[str, Any], policy: AddressPolicy) -> AsyncIterator[client.ApiClient]:
    """A guarded API client for the kubeconfig's current context (callers pass
    `_request_timeout`: the library has no default timeout)."""
    api = await guarded_api_client(await api_config(doc), policy)
    try:
        with refusals_as_provider_errors():
            yield api
    finally:
        await api.close()
