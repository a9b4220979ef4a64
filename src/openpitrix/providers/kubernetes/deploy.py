"""Apply, watch, prune and delete a release's objects with server-side apply.

Every object gets our field manager and the labels naming its cluster and revision, so a
cluster's objects can always be found (delete, describe) whatever the chart did.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Iterable
from typing import Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.dynamic import DynamicClient
from kubernetes_asyncio.dynamic.exceptions import (
    DynamicApiError,
    NotFoundError,
    ResourceNotFoundError,
)
from kubernetes_asyncio.dynamic.resource import Resource

from openpitrix.providers.base import ProviderError, Reporter
from openpitrix.providers.kubernetes import readiness
from openpitrix.providers.kubernetes.removed import not_served

FIELD_MANAGER = "openpitrix"
CLUSTER_LABEL = "openpitrix.io/cluster"
REVISION_LABEL = "openpitrix.io/revision"
MANAGED_BY = ("app.kubernetes.io/managed-by", "openpitrix")
POLL_SECONDS = 1.0
REQUEST_TIMEOUT = 30


def _status_message(exc: Exception) -> str:
    body = getattr(exc, "body", None) or getattr(exc, "summary", lambda: "")()
    return str(body)[:500] if body else str(exc)[:500]


def api_failure(exc: Exception, what: str) -> ProviderError:
    """An API error as a provider error: throttling, 5xx and network trouble are retried;
    anything else (invalid object, forbidden) is the release's own fault."""
    status = getattr(exc, "status", None)
    if isinstance(exc, (aiohttp.ClientError, TimeoutError)):
        return ProviderError(
            "provider_unavailable", f"{what}: {type(exc).__name__}: {exc}", retryable=True
        )
    if isinstance(status, int) and (status == 429 or status >= 500):
        return ProviderError("provider_unavailable", f"{what}: HTTP {status}", retryable=True)
    return ProviderError("apply_failed", f"{what}: HTTP {status}: {_status_message(exc)}")


class Missing(Exception):
    """The API answered 404."""


async def checked(call: Awaitable[Any], what: str) -> dict[str, Any]:
    """Await a dynamic-client call and return the object as a dict. The dynamic client of
    kubernetes-asyncio returns error Status bodies as if they were results instead of raising
    (tomplus/kubernetes_asyncio#402), so the Status is checked here: 404 raises Missing, other
    failures a provider error."""
    try:
        result = await call
    except NotFoundError:
        raise Missing(what) from None
    except (DynamicApiError, ApiException, aiohttp.ClientError, TimeoutError) as exc:
        raise api_failure(exc, what) from None
    body: dict[str, Any] = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    if body.get("kind") == "Status" and body.get("status") == "Failure":
        code = body.get("code")
        if code == 404:
            raise Missing(what)
        raise status_failure(code, str(body.get("message", "")), what)
    return body


def status_failure(code: Any, message: str, what: str) -> ProviderError:
    if isinstance(code, int) and (code == 429 or code >= 500):
        return ProviderError("provider_unavailable", f"{what}: HTTP {code}", retryable=True)
    return ProviderError("apply_failed", f"{what}: HTTP {code}: {message[:500]}")


def object_key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (str(obj.get("apiVersion")), str(obj.get("kind")), str(meta.get("name")))


def stamp(obj: dict[str, Any], cluster_id: str, revision: int) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    labels = meta.setdefault("labels", {}) or {}
    labels.update(
        {CLUSTER_LABEL: cluster_id, REVISION_LABEL: str(revision), MANAGED_BY[0]: MANAGED_BY[1]}
    )
    meta["labels"] = labels
    template = (out.get("spec") or {}).get("template")
    if isinstance(template, dict):
        # Pods carry the cluster (not the revision: that would restart every pod on each
        # upgrade), so describe finds them by label.
        tmeta = template.setdefault("metadata", {})
        tlabels = tmeta.get("labels") or {}
        tlabels[CLUSTER_LABEL] = cluster_id
        tmeta["labels"] = tlabels
    return out


async def resource_of(dyn: DynamicClient, obj: dict[str, Any]) -> Resource:
    try:
        return await dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    except ResourceNotFoundError:
        raise ProviderError(
            "apply_failed", not_served(str(obj["apiVersion"]), str(obj["kind"]))
        ) from None
    except (ApiException, aiohttp.ClientError, TimeoutError) as exc:
        raise api_failure(exc, f"discover {obj['kind']}") from None


def placed(obj: dict[str, Any], resource: Resource, namespace: str) -> dict[str, Any]:
    if not resource.namespaced:
        return obj
    meta = obj["metadata"]
    wanted = meta.get("namespace")
    if wanted and wanted != namespace:
        # The runtime is this namespace; a chart must not reach into another tenant's.
        raise ProviderError(
            "apply_failed",
            f"{readiness.ref(obj)} targets namespace {wanted!r}, outside the runtime's "
            f"namespace {namespace!r}",
        )
    meta["namespace"] = namespace
    return obj


async def apply_objects(
    dyn: DynamicClient,
    objects: list[dict[str, Any]],
    *,
    namespace: str,
    cluster_id: str,
    revision: int,
    report: Reporter,
) -> list[dict[str, Any]]:
    """Server-side apply each object in order; returns them as the server stored them."""
    applied = []
    for i, raw in enumerate(objects):
        obj = stamp(raw, cluster_id, revision)
        resource = await resource_of(dyn, obj)
        obj = placed(obj, resource, namespace)
        what = f"apply {readiness.ref(obj)}"
        try:
            # force: this release owns its objects; another manager's edits to the same
            # fields (a hand `kubectl edit`) are overwritten, as `helm upgrade` would.
            result = await checked(
                dyn.server_side_apply(
                    resource,
                    body=obj,
                    namespace=obj["metadata"].get("namespace"),
                    field_manager=FIELD_MANAGER,
                    force_conflicts=True,
                    _request_timeout=REQUEST_TIMEOUT,
                ),
                what,
            )
        except Missing:
            raise ProviderError(
                "apply_failed", f"{what}: not found (is the namespace {namespace!r} gone?)"
            ) from None
        applied.append(result)
        if obj.get("kind") == "CustomResourceDefinition":
            # Kinds the CRD adds must be discoverable by the objects after it.
            await dyn.resources.invalidate_cache()
        await report(f"applied {readiness.ref(obj)}", None, {"applied": i + 1})
    return applied


async def _events_about(dyn: DynamicClient, namespace: str, names: set[str]) -> list[str]:
    try:
        resource = await dyn.resources.get(api_version="v1", kind="Event")
        found = await checked(
            dyn.get(resource, namespace=namespace, _request_timeout=REQUEST_TIMEOUT), "events"
        )
    except Exception:  # events only enrich a failure message; never fail for them
        return []
    out = []
    for item in found.get("items") or []:
        involved = (item.get("involvedObject") or {}).get("name")
        if involved in names and item.get("type") == "Warning":
            out.append(f"{item.get('reason')}: {item.get('message')}")
    return out[-5:]


async def _pods_of(dyn: DynamicClient, namespace: str, obj: dict[str, Any]) -> list[dict[str, Any]]:
    selector = readiness.selector_of(obj)
    if selector is None:
        return []
    resource = await dyn.resources.get(api_version="v1", kind="Pod")
    try:
        found = await checked(
            dyn.get(
                resource,
                namespace=namespace,
                label_selector=selector,
                _request_timeout=REQUEST_TIMEOUT,
            ),
            "list pods",
        )
    except Missing:
        return []
    items: list[dict[str, Any]] = found.get("items") or []
    return items


async def wait_ready(
    dyn: DynamicClient,
    objects: list[dict[str, Any]],
    *,
    namespace: str,
    timeout_seconds: float,
    report: Reporter,
) -> None:
    """Poll each tracked object until all are ready; fail fast on a failure that will not fix
    itself, with the real reason (a container's waiting reason, the object's warning events)."""
    tracked = [o for o in objects if o.get("kind") in readiness.TRACKED]
    deadline = time.monotonic() + timeout_seconds
    last_summary = ""
    while True:
        states: list[readiness.Readiness] = []
        slow: list[str] = []
        for obj in tracked:
            resource = await resource_of(dyn, obj)
            try:
                current = await checked(
                    dyn.get(
                        resource,
                        name=obj["metadata"]["name"],
                        namespace=namespace if resource.namespaced else None,
                        _request_timeout=REQUEST_TIMEOUT,
                    ),
                    f"read {readiness.ref(obj)}",
                )
            except Missing:
                raise ProviderError(
                    "apply_failed", f"{readiness.ref(obj)} disappeared while waiting"
                ) from None
            state = readiness.assess(current)
            if state.failed:
                raise await _failure(dyn, namespace, current, state.failed)
            if not state.ready and current.get("kind") in readiness.WORKLOADS:
                for pod in await _pods_of(dyn, namespace, current):
                    problem = readiness.pod_problem(pod)
                    if problem and problem[1]:
                        raise await _failure(dyn, namespace, current, problem[0], pod)
                    if problem:
                        slow.append(problem[0])
            states.append(state)
        ready = sum(1 for s in states if s.ready)
        percent = int(100 * ready / len(states)) if states else 100
        summary = "; ".join(s.summary for s in states) or "nothing to wait for"
        if summary != last_summary:
            await report(summary, percent, {"ready": ready, "total": len(states)})
            last_summary = summary
        if ready == len(states):
            return
        if time.monotonic() >= deadline:
            waiting = [s.summary for s in states if not s.ready]
            detail = f" ({'; '.join(sorted(set(slow)))})" if slow else ""
            raise ProviderError(
                "not_ready",
                f"not ready after {int(timeout_seconds)} s: {', '.join(waiting)}{detail}",
            )
        await asyncio.sleep(POLL_SECONDS)


async def _failure(
    dyn: DynamicClient,
    namespace: str,
    obj: dict[str, Any],
    reason: str,
    pod: dict[str, Any] | None = None,
) -> ProviderError:
    names = {obj["metadata"]["name"]}
    if pod is not None:
        names.add(pod["metadata"]["name"])
    events = await _events_about(dyn, namespace, names)
    tail = f"; events: {' | '.join(events)}" if events else ""
    return ProviderError("not_ready", f"{readiness.ref(obj)}: {reason}{tail}")


async def delete_objects(
    dyn: DynamicClient, objects: Iterable[dict[str, Any]], *, namespace: str
) -> int:
    """Delete the given objects (missing ones are fine); returns how many were there."""
    deleted = 0
    for obj in objects:
        resource = await resource_of(dyn, obj)
        try:
            await checked(
                dyn.delete(
                    resource,
                    name=obj["metadata"]["name"],
                    namespace=namespace if resource.namespaced else None,
                    body={"propagationPolicy": "Background"},
                    _request_timeout=REQUEST_TIMEOUT,
                ),
                f"delete {readiness.ref(obj)}",
            )
            deleted += 1
        except Missing:
            continue
    return deleted


async def labelled_objects(
    dyn: DynamicClient, kinds: Iterable[tuple[str, str]], *, namespace: str, cluster_id: str
) -> list[dict[str, Any]]:
    """Every object of these kinds carrying the cluster's label. Kinds are resolved one by
    one (a miss makes the discovery cache refresh, which must not run twice at once), then
    listed all at once."""
    resources = [r for av, kind in sorted(set(kinds)) if (r := await served(dyn, av, kind))]
    selector = f"{CLUSTER_LABEL}={cluster_id}"
    lists = await asyncio.gather(
        *(_list(dyn, r, namespace=namespace, label_selector=selector) for r in resources)
    )
    return [obj for found in lists for obj in found]


async def resource_quotas(dyn: DynamicClient, *, namespace: str) -> list[dict[str, Any]]:
    """The namespace's ResourceQuotas (none when the cluster serves no such kind)."""
    resource = await served(dyn, "v1", "ResourceQuota")
    return await _list(dyn, resource, namespace=namespace) if resource else []


async def served(dyn: DynamicClient, api_version: str, kind: str) -> Resource | None:
    """The kind's resource, or None when the cluster does not serve it (e.g. a CRD removed
    meanwhile: nothing of that kind can exist)."""
    try:
        resource: Resource = await dyn.resources.get(api_version=api_version, kind=kind)
    except ResourceNotFoundError:
        return None
    except (ApiException, aiohttp.ClientError, TimeoutError) as exc:
        raise api_failure(exc, f"discover {kind}") from None
    return resource


async def _list(
    dyn: DynamicClient, resource: Resource, *, namespace: str, label_selector: str | None = None
) -> list[dict[str, Any]]:
    """Objects of a resource in the namespace (all of it for a cluster-scoped one), each with
    its apiVersion and kind; none when the namespace is gone."""
    try:
        listed = await checked(
            dyn.get(
                resource,
                namespace=namespace if resource.namespaced else None,
                label_selector=label_selector,
                _request_timeout=REQUEST_TIMEOUT,
            ),
            f"list {resource.kind}",
        )
    except Missing:
        return []  # the namespace is gone: so is everything in it
    found = []
    for item in listed.get("items") or []:
        item.setdefault("apiVersion", resource.group_version)
        item.setdefault("kind", resource.kind)
        found.append(item)
    return found
