"""The installed providers, loaded from the `openpitrix.providers` entry point group by the
composition root and handed to whatever needs them (the cluster job adapter, the runtime and
cluster services through the API's dependency)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from importlib.metadata import entry_points

from openpitrix.errors import BadRequest
from openpitrix.providers.base import Provider

log = logging.getLogger(__name__)

GROUP = "openpitrix.providers"


def unknown_provider(name: str, installed: Iterable[str]) -> BadRequest:
    """The 400 for a provider name that is not installed, listing those that are."""
    return BadRequest(
        f"provider {name!r} is not available; installed: {', '.join(sorted(installed)) or 'none'}",
        code="unknown_provider",
    )


class Providers(Mapping[str, Provider]):
    """Providers by name, fixed when built. One instance of each per process, shared by every
    request and task."""

    def __init__(self, providers: Iterable[Provider] = ()) -> None:
        self._by_name: dict[str, Provider] = {}
        for provider in providers:
            if provider.name in self._by_name:
                raise ValueError(f"two providers named {provider.name!r}")
            self._by_name[provider.name] = provider

    def __getitem__(self, name: str) -> Provider:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def named(self, name: str) -> Provider:
        """The provider a request names; 400 `unknown_provider` listing the installed ones."""
        provider = self._by_name.get(name)
        if provider is None:
            raise unknown_provider(name, self._by_name)
        return provider

    async def close(self) -> None:
        """Let every provider release its pooled connections (the process is stopping)."""
        for provider in self._by_name.values():
            try:
                await provider.close()
            except Exception:
                log.exception("provider %s failed to close", provider.name)


def load_providers() -> Providers:
    """Every provider installed under the entry point group. A plugin that fails to load is
    logged and left out rather than taking the server down."""
    found: list[Provider] = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            provider = ep.load()()
        except Exception:
            log.exception("provider plugin failed to load name=%s value=%s", ep.name, ep.value)
            continue
        if not isinstance(provider, Provider) or provider.name != ep.name:
            log.error("provider plugin %s is not a Provider named %r; ignored", ep.value, ep.name)
            continue
        found.append(provider)
    return Providers(found)


def installed_names() -> list[str]:
    """The names of the installed providers, without loading them."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})
