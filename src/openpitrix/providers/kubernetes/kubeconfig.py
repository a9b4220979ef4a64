"""Kubeconfigs as credentials: parsed, checked for safety, turned into API clients.

A kubeconfig is user input to a shared server, so only self-contained ones are accepted: inline
certificates and tokens. `exec` and `auth-provider` plugins would run programs on our hosts,
and file references (`certificate-authority`, `tokenFile`, ...) would read our files.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import yaml_rs
from kubernetes_asyncio import client, config

from openpitrix.providers.base import CredentialInvalid

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
    configuration = client.Configuration()
    await config.load_kube_config_from_dict(config_dict=doc, client_configuration=configuration)
    return configuration


@contextlib.asynccontextmanager
async def api_client(doc: dict[str, Any]) -> AsyncIterator[client.ApiClient]:
    """An API client for the kubeconfig's current context (callers pass `_request_timeout`:
    the library has no default timeout)."""
    api = client.ApiClient(configuration=await api_config(doc))
    try:
        yield api
    finally:
        await api.close()
