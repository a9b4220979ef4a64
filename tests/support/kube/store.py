"""Object storage with one global resourceVersion counter and the history watches read."""

# Everything runs on the event loop thread (HTTP handlers, controllers, test hooks), so plain
# dicts are enough; watchers wait on asyncio events that each write sets.

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.support.kube.resources import ResourceType

Obj = dict[str, Any]
StoreKey = tuple[str, str]  # (group, plural): every served version of a type shares storage
ObjKey = tuple[str, str]  # (namespace or "", name)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    store_key: StoreKey
    obj: Obj
    prev: Obj | None  # the object before a MODIFIED, so watches can tell selector moves


class Store:
    def __init__(self, history: int = 20000) -> None:
        self.rv = 100
        self._data: dict[StoreKey, dict[ObjKey, Obj]] = {}
        self.events: deque[Event] = deque(maxlen=history)
        self._waiters: set[asyncio.Event] = set()
        self.closed = False

    # ----------------------------------------------------------------------------- reads

    @staticmethod
    def key(rt: ResourceType) -> StoreKey:
        return (rt.group, rt.plural)

    def find(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        """The stored object itself (callers must not mutate it) or None."""
        return self._data.get(self.key(rt), {}).get((namespace if rt.namespaced else "", name))

    def items(self, rt: ResourceType, namespace: str | None = None) -> list[Obj]:
        """Stored objects (not copies), sorted by namespace then name like etcd keys."""
        bucket = self._data.get(self.key(rt), {})
        keys = sorted(k for k in bucket if namespace is None or k[0] == namespace)
        return [bucket[k] for k in keys]

    def all_in_namespace(self, namespace: str) -> Iterator[tuple[StoreKey, Obj]]:
        for store_key, bucket in self._data.items():
            for (ns, _), obj in list(bucket.items()):
                if ns == namespace:
                    yield store_key, obj

    def every(self) -> Iterator[tuple[StoreKey, Obj]]:
        for store_key, bucket in self._data.items():
            for obj in list(bucket.values()):
                yield store_key, obj

    def oldest_rv(self) -> int:
        return self.events[0].rv if self.events else self.rv

    # ---------------------------------------------------------------------------- writes

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        for waiter in self._waiters:
            waiter.set()

    def put(self, rt: ResourceType, obj: Obj) -> Obj:
        """Store `obj` (added or modified) under a new resourceVersion; returns a copy."""
        meta = obj["metadata"]
        key = (meta.get("namespace", "") if rt.namespaced else "", meta["name"])
        bucket = self._data.setdefault(self.key(rt), {})
        prev = bucket.get(key)
        stored = copy.deepcopy(obj)
        rv = self._next_rv()
        stored["metadata"]["resourceVersion"] = str(rv)
        bucket[key] = stored
        self._emit(Event(rv, "MODIFIED" if prev else "ADDED", self.key(rt), stored, prev))
        return copy.deepcopy(stored)

    def remove(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        key = (namespace if rt.namespaced else "", name)
        prev = self._data.get(self.key(rt), {}).pop(key, None)
        if prev is None:
            return None
        # The DELETED event carries the object at the resourceVersion of its deletion.
        gone = copy.deepcopy(prev)
        rv = self._next_rv()
        gone["metadata"]["resourceVersion"] = str(rv)
        self._emit(Event(rv, "DELETED", self.key(rt), gone, prev))
        return copy.deepcopy(gone)

    def drop_type(self, store_key: StoreKey) -> None:
        self._data.pop(store_key, None)

    # --------------------------------------------------------------------------- watches

    def subscribe(self) -> asyncio.Event:
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        return waiter

    def unsubscribe(self, waiter: asyncio.Event) -> None:
        self._waiters.discard(waiter)

    def events_after(self, rv: int) -> list[Event]:
        return [e for e in self.events if e.rv > rv]

    def close(self) -> None:
        """End every watch stream (the server is stopping)."""
        self.closed = True
        for waiter in self._waiters:
            waiter.set()
