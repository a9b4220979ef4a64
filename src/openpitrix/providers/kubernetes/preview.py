"""Preview a release: server-side-apply dry runs compared field by field with the live objects."""

from __future__ import annotations

import copy
from typing import Any

from kubernetes_asyncio.dynamic import DynamicClient

from openpitrix.providers.base import Change, FieldChange, ProviderError
from openpitrix.providers.kubernetes import deploy
from openpitrix.providers.kubernetes.provider import REDACTED

# Fields the server keeps for itself: they change on every write and say nothing about what
# the release changes.
SERVER_METADATA = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")


def ref(obj: dict[str, Any]) -> str:
    """`apps/v1 Deployment web`: how a change names its object."""
    return f"{obj.get('apiVersion')} {obj.get('kind')} {(obj.get('metadata') or {}).get('name')}"


def comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without what the server manages, nor the revision label every deploy moves
    (the preview notes it once instead of on every object)."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for key in SERVER_METADATA:
        meta.pop(key, None)
    labels = meta.get("labels")
    if isinstance(labels, dict):
        labels.pop(deploy.REVISION_LABEL, None)
        if not labels:
            meta.pop("labels")
    return out


def field_diff(before: Any, after: Any, path: str = "") -> list[FieldChange]:
    """The leaves that differ, dicts walked by key and lists of equal length by index (a list
    that grew or shrank is one change)."""
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after), key=str):
            sub = _join(path, str(key))
            out += field_diff(before.get(key), after.get(key), sub)
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            out += field_diff(b, a, f"{path}[{i}]")
        return out
    return [FieldChange(path=path, before=before, after=after)]


def _join(path: str, key: str) -> str:
    # Keys with dots (labels like app.kubernetes.io/name) are quoted, so paths stay readable.
    if "." in key or "[" in key:
        return f'{path}["{key}"]'
    return f"{path}.{key}" if path else key


def redacted(obj: dict[str, Any], diff: list[FieldChange]) -> list[FieldChange]:
    """A Secret's values never leave the server: a changed key shows, its values do not."""
    if obj.get("kind") != "Secret":
        return diff
    out = []
    for change in diff:
        if change.path.split(".")[0].split("[")[0] in ("data", "stringData"):
            change = FieldChange(
                path=change.path,
                before=_hide(change.before),
                after=_hide(change.after),
            )
        out.append(change)
    return out


def _hide(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return dict.fromkeys(value, REDACTED)
    return REDACTED


async def object_changes(
    dyn: DynamicClient,
    objects: list[dict[str, Any]],
    *,
    namespace: str,
    cluster_id: str,
    revision: int,
) -> tuple[list[Change], list[str]]:
    """For each rendered object, a server-side apply with dryRun=All (our field manager,
    forced, as the real apply) compared with the object as it is."""
    changes: list[Change] = []
    notes: list[str] = []
    # Kinds the release's own CRDs add are not served until the CRDs are applied for real.
    new_kinds = {_crd_kind(o) for o in objects if o.get("kind") == "CustomResourceDefinition"}
    for raw in objects:
        obj = deploy.stamp(raw, cluster_id, revision)
        if (obj.get("apiVersion"), obj.get("kind")) in new_kinds and not await deploy.served(
            dyn, str(obj["apiVersion"]), str(obj["kind"])
        ):
            changes.append(Change(kind="create", resource=ref(obj)))
            notes.append(
                f"{ref(obj)}: its kind comes with this release; the server did not check it"
            )
            continue
        resource = await deploy.resource_of(dyn, obj)
        obj = deploy.placed(obj, resource, namespace)
        name = obj["metadata"]["name"]
        ns = namespace if resource.namespaced else None
        try:
            live: dict[str, Any] | None = await deploy.checked(
                dyn.get(resource, name=name, namespace=ns, _request_timeout=deploy.REQUEST_TIMEOUT),
                f"read {ref(obj)}",
            )
        except deploy.Missing:
            live = None
        what = f"dry-run apply {ref(obj)}"
        try:
            result = await deploy.checked(
                dyn.server_side_apply(
                    resource,
                    body=obj,
                    namespace=ns,
                    field_manager=deploy.FIELD_MANAGER,
                    force_conflicts=True,
                    dry_run="All",
                    _request_timeout=deploy.REQUEST_TIMEOUT,
                ),
                what,
            )
        except deploy.Missing:
            raise ProviderError(
                "apply_failed", f"{what}: not found (is the namespace {namespace!r} gone?)"
            ) from None
        if live is None:
            changes.append(Change(kind="create", resource=ref(obj)))
            continue
        diff = redacted(obj, field_diff(comparable(live), comparable(result)))
        changes.append(Change(kind="update" if diff else "unchanged", resource=ref(obj), diff=diff))
    return changes, notes


def _crd_kind(crd: dict[str, Any]) -> tuple[str, str] | None:
    spec = crd.get("spec") or {}
    group = spec.get("group")
    kind = (spec.get("names") or {}).get("kind")
    versions = [v.get("name") for v in spec.get("versions") or [] if isinstance(v, dict)]
    if not group or not kind or not versions:
        return None
    # Any served version will do for the check above; the first is the usual one.
    return (f"{group}/{versions[0]}", str(kind))


def deletions(found: list[dict[str, Any]], keep: set[tuple[str, str, str]]) -> list[Change]:
    """The cluster's labelled objects the release no longer renders. Objects a controller made
    (with an owner) go with their owner and are not listed."""
    return [
        Change(kind="delete", resource=ref(o))
        for o in found
        if deploy.object_key(o) not in keep and not (o.get("metadata") or {}).get("ownerReferences")
    ]
