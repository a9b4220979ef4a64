"""List and object responses: limit/continue pages, Table or PartialObjectMetadata views."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.support.kube import tables
from tests.support.kube.resources import ResourceType
from tests.support.kube.status import bad_request

Obj = dict[str, Any]
_META_V1 = "meta.k8s.io/v1"


def _partial(obj: Obj) -> Obj:
    return {"kind": "PartialObjectMetadata", "apiVersion": _META_V1, "metadata": obj["metadata"]}


def _page(items: list[Obj], rv: int, limit: int, token: str | None) -> tuple[list[Obj], Obj]:
    """One page of `items` (sorted by namespace and name) and the list metadata."""
    if token:
        try:
            start = json.loads(base64.urlsafe_b64decode(token.encode()))
            after, rv = list(start["after"]), int(start["rv"])
        except (ValueError, KeyError, TypeError):
            raise bad_request("continue key is not valid") from None
        items = [
            o for o in items if [o["metadata"].get("namespace", ""), o["metadata"]["name"]] > after
        ]
    meta: Obj = {"resourceVersion": str(rv)}
    if limit and len(items) > limit:
        last = items[limit - 1]["metadata"]
        # The token pins the list's resourceVersion, as the real continue token does.
        cursor = {"rv": rv, "after": [last.get("namespace", ""), last["name"]]}
        meta["continue"] = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode()
        meta["remainingItemCount"] = len(items) - limit
        items = items[:limit]
    return items, meta


def list_body(
    rt: ResourceType,
    items: list[Obj],
    rv: int,
    *,
    limit: int,
    token: str | None,
    accept: str,
    include: str,
) -> Obj:
    items, meta = _page(items, rv, limit, token)
    if "as=Table" in accept:
        return tables.table(rt, items, meta["resourceVersion"], include)
    if "as=PartialObjectMetadataList" in accept:
        return {
            "kind": "PartialObjectMetadataList",
            "apiVersion": _META_V1,
            "metadata": meta,
            "items": [_partial(o) for o in items],
        }
    if rt.builtin:
        # Typed lists carry no kind/apiVersion on their items; custom resources do.
        for item in items:
            item.pop("apiVersion", None)
            item.pop("kind", None)
    return {
        "kind": f"{rt.kind}List",
        "apiVersion": rt.api_version,
        "metadata": meta,
        "items": items,
    }


def object_body(rt: ResourceType, obj: Obj, *, accept: str, include: str) -> Obj:
    if "as=Table" in accept:
        return tables.table(rt, [obj], obj["metadata"]["resourceVersion"], include)
    if "as=PartialObjectMetadata" in accept:
        return _partial(obj)
    return obj
