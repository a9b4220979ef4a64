"""Deletion: preconditions, finalizers, garbage collection, namespace and CRD removal."""

# Simplified: deletion is immediate unless metadata.finalizers hold it (no graceful pod
# termination), Foreground propagation deletes dependents at once, and a deleted namespace stays
# Terminating only for the controllers' namespace delay.

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from tests.support.kube import status
from tests.support.kube.resources import CRD_TYPE, NAMESPACE_TYPE, Registry, ResourceType
from tests.support.kube.store import Store, now

Obj = dict[str, Any]
Listener = Callable[[ResourceType, Obj | None, Obj | None], None]


class Deletions:
    """The deleting half of the API (Api builds on it); also the helpers both halves use."""

    store: Store
    registry: Registry
    listeners: list[Listener]
    # How deferred work (namespace termination) runs; the controllers make it a delayed call.
    defer: Callable[[Callable[[], None]], None]

    def present(self, rt: ResourceType, obj: Obj) -> Obj:
        out = copy.deepcopy(obj)
        out["apiVersion"], out["kind"] = rt.api_version, rt.kind
        return out

    def existing(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        found = self.store.find(rt, namespace, name)
        if found is None:
            raise status.not_found(rt, name)
        return found

    def notify(self, rt: ResourceType, old: Obj | None, new: Obj | None) -> None:
        for listener in self.listeners:
            listener(rt, old, new)

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        options: Obj,
        *,
        dry_run: bool = False,
    ) -> Obj:
        """Delete one object; returns the response body (the object or a Success Status)."""
        old = self.existing(rt, namespace, name)
        pre = options.get("preconditions") or {}
        meta = old["metadata"]
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise status.precondition_failed(
                rt,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, "
                f"UID in object meta: {meta.get('uid')}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise status.precondition_failed(
                rt,
                name,
                f"Precondition failed: ResourceVersion in precondition: "
                f"{pre['resourceVersion']}, ResourceVersion in meta: {meta['resourceVersion']}",
            )
        if dry_run:
            return self.present(rt, old)
        if meta.get("deletionTimestamp"):
            return self.present(rt, old)
        if rt is NAMESPACE_TYPE:
            return self._terminate_namespace(old)
        if meta.get("finalizers"):
            marked = copy.deepcopy(old)
            marked["metadata"]["deletionTimestamp"] = now()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            stored = self.store.put(rt, marked)
            self.notify(rt, old, stored)
            return self.present(rt, stored)
        policy = options.get("propagationPolicy") or "Background"
        gone = self.remove(rt, old, orphan=policy == "Orphan")
        if rt.kind == "Pod" and rt.builtin:
            return self.present(rt, gone)
        return status.success(rt, name, str(meta.get("uid")))

    def remove(self, rt: ResourceType, old: Obj, *, orphan: bool = False) -> Obj:
        """Remove a stored object at once, with what the garbage collector does after."""
        meta = old["metadata"]
        gone = self.store.remove(rt, meta.get("namespace", ""), meta["name"])
        assert gone is not None
        self._collect_dependents(str(meta.get("uid")), meta.get("namespace", ""), orphan=orphan)
        if rt is CRD_TYPE:
            for crt in self.registry.remove_crd(meta["name"]):
                for item in self.store.items(crt):
                    item_meta = item["metadata"]
                    self.store.remove(crt, item_meta.get("namespace", ""), item_meta["name"])
                    self.notify(crt, item, None)
        self.notify(rt, old, None)
        return gone

    def _collect_dependents(self, uid: str, namespace: str, *, orphan: bool) -> None:
        for store_key, obj in list(self.store.every()):
            refs = obj["metadata"].get("ownerReferences") or []
            if not any(r.get("uid") == uid for r in refs):
                continue
            if obj["metadata"].get("namespace", "") not in (namespace, ""):
                continue
            rt = self.type_of(store_key)
            if rt is None:
                continue
            if orphan:
                kept = copy.deepcopy(obj)
                kept["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                if not kept["metadata"]["ownerReferences"]:
                    del kept["metadata"]["ownerReferences"]
                self.notify(rt, obj, self.store.put(rt, kept))
            elif self.store.find(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]):
                self.remove(rt, obj)

    def type_of(self, store_key: tuple[str, str]) -> ResourceType | None:
        return next((t for t in self.registry.all() if (t.group, t.plural) == store_key), None)

    def _terminate_namespace(self, ns: Obj) -> Obj:
        marked = copy.deepcopy(ns)
        marked["metadata"]["deletionTimestamp"] = now()
        marked["status"] = {"phase": "Terminating"}
        stored = self.store.put(NAMESPACE_TYPE, marked)
        name = ns["metadata"]["name"]
        self.defer(lambda: self.finish_namespace(name))
        return self.present(NAMESPACE_TYPE, stored)

    def finish_namespace(self, name: str) -> None:
        """What the namespace controller does: delete the content, then the namespace."""
        for store_key, obj in list(self.store.all_in_namespace(name)):
            rt = self.type_of(store_key)
            if rt is not None and self.store.find(rt, name, obj["metadata"]["name"]):
                self.store.remove(rt, name, obj["metadata"]["name"])
                self.notify(rt, obj, None)
        ns = self.store.find(NAMESPACE_TYPE, "", name)
        if ns is not None:
            self.store.remove(NAMESPACE_TYPE, "", name)
            self.notify(NAMESPACE_TYPE, ns, None)
