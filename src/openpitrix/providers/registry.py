"""Providers by name, from the `openpitrix.providers` entry point group."""

from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import entry_points

from openpitrix.errors import BadRequest
from openpitrix.providers.base import Provider

log = logging.getLogger(__name__)

GROUP = "openpitrix.providers"


@cache
def registered() -> dict[str, Provider]:
    """Every installed provider, loaded once per process. A plugin that fails to load is
    logged and left out rather than taking the server down."""
    found: dict[str, Provider] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            cls = ep.load()
            provider = cls()
        except Exception:
            log.exception("provider plugin failed to load name=%s value=%s", ep.name, ep.value)
            continue
        if not isinstance(provider, Provider) or provider.name != ep.name:
            log.error("provider plugin %s is not a Provider named %r; ignored", ep.value, ep.name)
            continue
        found[ep.name] = provider
    return found


def get_provider(name: str) -> Provider:
    provider = registered().get(name)
    if provider is None:
        raise BadRequest(
            f"provider {name!r} is not available; installed: {', '.join(registered()) or 'none'}",
            code="unknown_provider",
        )
    return provider


async def close_providers() -> None:
    """Let every loaded provider release its pooled connections (a worker is stopping)."""
    if registered.cache_info().currsize == 0:
        return
    for provider in registered().values():
        try:
            await provider.close()
        except Exception:
            log.exception("provider %s failed to close", provider.name)
