"""Watches: newline-delimited JSON events from a resourceVersion on, as the server streams."""

# Synthetic ADDED events for a watch from "now", ERROR 410 for a compacted version, and
# ADDED/DELETED when an update moves an object into or out of the watch's selector.

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response, StreamingResponse

from tests.support.kube import status
from tests.support.kube.api import Api
from tests.support.kube.resources import ResourceType
from tests.support.kube.selectors import Matcher
from tests.support.kube.status import bad_request
from tests.support.kube.store import Event

Obj = dict[str, Any]


def _line(kind: str, obj: Obj) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


async def _single(event: Obj) -> AsyncIterator[bytes]:
    yield json.dumps(event).encode() + b"\n"


def _stream(body: AsyncIterator[bytes]) -> Response:
    return StreamingResponse(body, media_type="application/json")


def watch_response(
    api: Api,
    rt: ResourceType,
    namespace: str | None,
    matchers: list[Matcher],
    *,
    resource_version: str,
    send_initial: bool,
    timeout: float,
) -> Response:
    store = api.store

    def matches(obj: Obj | None) -> bool:
        if obj is None:
            return False
        if namespace is not None and obj["metadata"].get("namespace") != namespace:
            return False
        return all(m(obj) for m in matchers)

    def translate(event: Event) -> tuple[str, Obj] | None:
        if event.store_key != (rt.group, rt.plural):
            return None
        now_in, was_in = matches(event.obj), matches(event.prev)
        if event.type == "DELETED":
            return ("DELETED", event.obj) if was_in else None
        if event.type == "ADDED":
            return ("ADDED", event.obj) if now_in else None
        if now_in and was_in:
            return ("MODIFIED", event.obj)
        if now_in:
            return ("ADDED", event.obj)
        return ("DELETED", event.obj) if was_in else None

    snapshot: list[Obj] = []
    if resource_version in ("", "0") or send_initial:
        snapshot = api.list_objects(rt, namespace, *matchers)
        start = store.rv
    else:
        try:
            start = int(resource_version)
        except ValueError:
            raise bad_request(f"invalid resource version: {resource_version}") from None
        if start < store.oldest_rv() - 1:
            expired = status.expired(resource_version, store.oldest_rv())
            return _stream(_single({"type": "ERROR", "object": expired.body()}))

    async def stream() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = start
        # Subscribing late is safe: events are read by resourceVersion, the waiter only wakes.
        waiter = store.subscribe()
        try:
            for obj in snapshot:
                yield _line("ADDED", obj)
            if send_initial:
                marker = {
                    "kind": rt.kind,
                    "apiVersion": rt.api_version,
                    "metadata": {
                        "resourceVersion": str(start),
                        "annotations": {"k8s.io/initial-events-end": "true"},
                    },
                }
                yield _line("BOOKMARK", marker)
            while not store.closed:
                waiter.clear()
                pending = store.events_after(last)
                for event in pending:
                    last = event.rv
                    found = translate(event)
                    if found is not None:
                        yield _line(found[0], api.present(rt, found[1]))
                if pending:
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                try:
                    await asyncio.wait_for(waiter.wait(), remaining)
                except TimeoutError:
                    return
        finally:
            store.unsubscribe(waiter)

    return _stream(stream())
