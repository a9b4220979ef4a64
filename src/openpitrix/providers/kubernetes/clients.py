"""API clients kept per cluster between the tasks of one worker process.

A fresh client costs a TLS handshake and, for the dynamic client, API discovery: one request
per API group, which on a real cluster with many CRDs is dozens of requests, for every task.
A pooled client does discovery once; a kind it does not know (a CRD a release just installed)
makes the library discover again on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from kubernetes_asyncio import client
from kubernetes_asyncio.dynamic import DynamicClient

from openpitrix.netguard import AddressPolicy
from openpitrix.providers.kubernetes.kubeconfig import (
    api_config,
    guarded_api_client,
    refusals_as_provider_errors,
)

IDLE_SECONDS = 300.0
MAX_IDLE = 16

_Key = tuple[int, AddressPolicy, str]


@dataclass
class _Entry:
    api: client.ApiClient
    dyn: DynamicClient
    cache_dir: tempfile.TemporaryDirectory[str]
    leases: int = 0
    last_used: float = field(default_factory=time.monotonic)
    retired: bool = False

    async def close(self) -> None:
        await self.api.close()
        self.cache_dir.cleanup()


class ClientPool:
    """Leases (ApiClient, DynamicClient) pairs keyed by kubeconfig content. Entries idle for
    IDLE_SECONDS, or beyond the MAX_IDLE most recent idle ones, are closed; an entry in use is
    never closed under its user."""

    def __init__(self, *, idle_seconds: float = IDLE_SECONDS, max_idle: int = MAX_IDLE) -> None:
        self._entries: dict[_Key, _Entry] = {}
        self._locks: dict[_Key, asyncio.Lock] = {}
        self._idle_seconds = idle_seconds
        self._max_idle = max_idle

    @contextlib.asynccontextmanager
    async def lease(
        self, doc: dict[str, Any], policy: AddressPolicy
    ) -> AsyncIterator[tuple[client.ApiClient, DynamicClient]]:
        # Clients belong to the event loop that made them, and to the policy guarding them.
        digest = hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()
        key = (id(asyncio.get_running_loop()), policy, digest)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one discovery per cluster, however many tasks start at once
            entry = self._entries.get(key)
            if entry is None:
                with refusals_as_provider_errors():
                    entry = await _connect(doc, policy)
                self._entries[key] = entry
            entry.leases += 1
        try:
            with refusals_as_provider_errors():
                yield entry.api, entry.dyn
        finally:
            entry.leases -= 1
            entry.last_used = time.monotonic()
            await self._trim()

    async def _trim(self) -> None:
        now = time.monotonic()
        idle = sorted(
            ((k, e) for k, e in self._entries.items() if e.leases == 0),
            key=lambda item: item[1].last_used,
            reverse=True,
        )
        for rank, (key, entry) in enumerate(idle):
            if (
                entry.retired
                or rank >= self._max_idle
                or now - entry.last_used > self._idle_seconds
            ):
                del self._entries[key]
                self._locks.pop(key, None)
                await entry.close()

    async def close(self) -> None:
        """Close every idle client now, and the others as their leases end."""
        for entry in self._entries.values():
            entry.retired = True
        await self._trim()


async def _connect(doc: dict[str, Any], policy: AddressPolicy) -> _Entry:
    api = await guarded_api_client(await api_config(doc), policy)
    # A discovery cache of its own: the library's default file in /tmp is keyed by host:port
    # only, so two clusters behind one address (or a reused port) would share a stale one.
    cache_dir = tempfile.TemporaryDirectory(prefix="op-discovery-")
    try:
        dyn = await DynamicClient(api, cache_file=os.path.join(cache_dir.name, "discovery.json"))
    except BaseException:
        await api.close()
        cache_dir.cleanup()
        raise
    return _Entry(api=api, dyn=dyn, cache_dir=cache_dir)
