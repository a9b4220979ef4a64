"""Reads and writes with the real server's semantics: strategy, admission, field manager."""

# What a registry strategy (defaults, validation, status/spec split, generation), admission,
# optimistic concurrency and the field manager (managedFields, server-side apply) do, on top of
# the store. Deletion lives in deletion.py.

from __future__ import annotations

import copy
import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import yaml

from tests.support.kube import managed, status
from tests.support.kube.crds import crd_status
from tests.support.kube.defaults import Allocator, apply_defaults
from tests.support.kube.deletion import Deletions, Listener
from tests.support.kube.fields import unknown_fields
from tests.support.kube.patches import json_patch, merge_patch, strategic_merge
from tests.support.kube.resources import CRD_TYPE, NAMESPACE_TYPE, Registry, ResourceType
from tests.support.kube.selectors import Matcher
from tests.support.kube.status import ApiError, bad_request
from tests.support.kube.store import Store, now
from tests.support.kube.validation import check_decodable, validate

Obj = dict[str, Any]

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_CARRIED_META = (
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "resourceVersion",
)


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(_NAME_CHARS) for _ in range(n))


@dataclass
class WriteOptions:
    manager: str
    manager_given: bool = True
    dry_run: bool = False
    validation: str = "Warn"  # Strict | Warn | Ignore
    subresource: str = ""
    warnings: list[str] = field(default_factory=list)


def _sent_managed_fields(obj: Obj) -> bool:
    """Did the client send managedFields of its own (a reset `[{}]` or real entries)?"""
    sent = obj.get("metadata", {}).get("managedFields")
    return isinstance(sent, list) and bool(sent) and all(isinstance(e, dict) for e in sent)


def _without_times(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    out.pop("apiVersion", None)
    out.pop("kind", None)
    meta = out.get("metadata") or {}
    meta.pop("resourceVersion", None)
    for entry in meta.get("managedFields") or []:
        entry.pop("time", None)
    return out


class Api(Deletions):
    """Reads and writes (create, update, patch, apply) with the real server's semantics."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self.alloc = Allocator()
        self.listeners: list[Listener] = []
        self.defer = lambda fn: fn()

    # ----------------------------------------------------------------------------- reads

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        found = self.store.find(rt, namespace, name)
        if found is None:
            raise status.not_found(rt, name)
        return self.present(rt, found)

    def list_objects(
        self, rt: ResourceType, namespace: str | None, *matchers: Matcher
    ) -> list[Obj]:
        return [
            self.present(rt, o)
            for o in self.store.items(rt, namespace)
            if all(m(o) for m in matchers)
        ]

    # ------------------------------------------------------------------------ write paths

    def create(self, rt: ResourceType, namespace: str, body: Any, opts: WriteOptions) -> Obj:
        obj = self._body(rt, body, namespace)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{random_suffix()}"
        name = str(meta.get("name") or "")
        if meta.get("resourceVersion"):
            raise ApiError(500, "resourceVersion should not be set on objects to be created")
        self._check_namespace(rt, namespace, name)
        if name and self.store.find(rt, namespace, name) is not None:
            raise status.already_exists(rt, name)
        self._fresh_meta(rt, obj)
        entry = managed.Entry(opts.manager, "Update", rt.api_version, "", now())
        return self.commit(rt, None, obj, opts, entry)

    def update(
        self, rt: ResourceType, namespace: str, name: str, body: Any, opts: WriteOptions
    ) -> Obj:
        obj = self._body(rt, body, namespace)
        if obj["metadata"].get("name") != name:
            raise bad_request(
                f"the name of the object ({obj['metadata'].get('name')}) does not match the "
                f"name on the URL ({name})"
            )
        old = self.existing(rt, namespace, name)
        given = obj["metadata"].get("resourceVersion")
        if not given and (not rt.builtin or rt is CRD_TYPE):
            raise status.field_invalid(
                rt,
                name,
                "metadata.resourceVersion",
                "Invalid value: 0x0: must be specified for an update",
            )
        if given and given != old["metadata"]["resourceVersion"]:
            raise status.stale(rt, name)
        new = self._carry(rt, old, obj, opts.subresource)
        entry = managed.Entry(opts.manager, "Update", rt.api_version, opts.subresource, now())
        return self.commit(rt, old, new, opts, entry)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch_type: str,
        raw: bytes,
        opts: WriteOptions,
        force: bool | None,
    ) -> Obj:
        if patch_type == APPLY:
            return self.apply(rt, namespace, name, raw, opts, force=bool(force))
        if force is not None:
            raise status.field_invalid(
                rt, name, "force", "Invalid value: true: may not be specified for non-apply patch"
            )
        if patch_type == STRATEGIC and not rt.builtin:
            raise status.unsupported_media_type(patch_type, [JSON_PATCH, MERGE, APPLY])
        old = self.existing(rt, namespace, name)
        try:
            document = json.loads(raw or b"null")
        except ValueError as exc:
            raise bad_request(f"error decoding patch: {exc}") from None
        current = self.present(rt, old)
        if patch_type == MERGE:
            patched = merge_patch(current, document)
        elif patch_type == STRATEGIC:
            if not isinstance(document, dict):
                raise bad_request("error decoding patch: must be a JSON object")
            patched = strategic_merge(current, document)
        else:
            patched = json_patch(current, document)
        obj = self._body(rt, patched, namespace)
        if obj["metadata"].get("name") != name:
            raise bad_request(
                f"the name of the object ({obj['metadata'].get('name')}) does "
                f"not match the name on the URL ({name})"
            )
        given = obj["metadata"].get("resourceVersion")
        if given and given != old["metadata"]["resourceVersion"]:
            raise status.stale(rt, name)
        new = self._carry(rt, old, obj, opts.subresource)
        entry = managed.Entry(opts.manager, "Update", rt.api_version, opts.subresource, now())
        return self.commit(rt, old, new, opts, entry)

    def apply(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        raw: bytes,
        opts: WriteOptions,
        *,
        force: bool,
    ) -> Obj:
        if not opts.manager_given:
            raise bad_request("fieldManager is required for apply requests")
        try:
            config = yaml.safe_load(raw.decode() if raw else "")
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise bad_request(f"error decoding YAML: {exc}") from None
        if not isinstance(config, dict):
            raise bad_request("error decoding YAML: the apply configuration must be an object")
        if not config.get("apiVersion") or not config.get("kind"):
            raise bad_request("Object 'Kind' is missing in the apply configuration")
        config = self._body(rt, config, namespace)
        if config["metadata"].get("name", name) != name:
            raise bad_request(
                f"the name of the object ({config['metadata'].get('name')}) does "
                f"not match the name on the URL ({name})"
            )
        config["metadata"]["name"] = name
        unknown_fields(rt, config, opts.validation, opts.warnings, apply=True)
        entry = managed.Entry(opts.manager, "Apply", rt.api_version, opts.subresource, now())
        keys = managed.list_keys_for(rt)
        old = self.store.find(rt, namespace, name)
        if old is None:
            if opts.subresource:
                raise status.not_found(rt, name)
            self._check_namespace(rt, namespace, name)
            obj = managed.apply(
                {}, config, entry, force=force, list_keys=keys, has_status=rt.status
            )
            obj = self._body(rt, obj, namespace)
            self._fresh_meta(rt, obj)
            return self.commit(rt, None, obj, opts, None)
        given = config["metadata"].get("resourceVersion")
        if given and given != old["metadata"]["resourceVersion"]:
            raise status.stale(rt, name)
        live = self.present(rt, old)
        merged = managed.apply(
            live, config, entry, force=force, list_keys=keys, has_status=rt.status
        )
        new = self._carry(rt, old, merged, opts.subresource, keep_managed=True)
        return self.commit(rt, old, new, opts, None)

    # --------------------------------------------------------------------------- helpers

    def _body(self, rt: ResourceType, body: Any, namespace: str) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        obj = copy.deepcopy(body)
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if api_version and api_version != rt.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the "
                f"expected API version ({rt.api_version})"
            )
        if kind and kind != rt.kind:
            raise bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj.setdefault("metadata", {})
        check_decodable(rt, obj)
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return obj

    def _check_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        if not rt.namespaced:
            return
        ns = self.store.find(NAMESPACE_TYPE, "", namespace)
        if ns is None:
            raise status.namespace_not_found(namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise status.forbidden(
                rt,
                name,
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
            )

    def _fresh_meta(self, rt: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "generation"):
            meta.pop(key, None)
        if not _sent_managed_fields(obj):
            meta.pop("managedFields", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if rt.status:
            obj.pop("status", None)

    def _carry(
        self, rt: ResourceType, old: Obj, obj: Obj, sub: str, *, keep_managed: bool = False
    ) -> Obj:
        """The object an update would store: what the client may not change comes from `old`."""
        if sub == "status":
            new = copy.deepcopy(old)
            new["status"] = copy.deepcopy(obj.get("status"))
            if keep_managed:
                new["metadata"]["managedFields"] = obj["metadata"].get("managedFields")
            return new
        new = copy.deepcopy(obj)
        meta = new["metadata"]
        for key in _CARRIED_META:
            if key in old["metadata"]:
                meta[key] = old["metadata"][key]
            else:
                meta.pop(key, None)
        if not keep_managed and not _sent_managed_fields(obj):
            meta["managedFields"] = copy.deepcopy(old["metadata"].get("managedFields"))
        if rt.status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        return new

    def commit(
        self,
        rt: ResourceType,
        old: Obj | None,
        new: Obj,
        opts: WriteOptions,
        entry: managed.Entry | None,
    ) -> Obj:
        causes = unknown_fields(rt, new, opts.validation, opts.warnings, apply=False)
        if causes:
            raise status.invalid(rt, str(new["metadata"].get("name")), causes)
        apply_defaults(rt, new, old, self.alloc)
        validate(rt, new, old)
        if rt.generation:
            if old is None:
                new["metadata"]["generation"] = 1
            else:
                before = {k: v for k, v in old.items() if k not in ("metadata", "status")}
                after = {k: v for k, v in new.items() if k not in ("metadata", "status")}
                changed = before != after if not rt.builtin else old.get("spec") != new.get("spec")
                new["metadata"]["generation"] = old["metadata"].get("generation", 1) + changed
        for key in ("labels", "annotations"):
            if new["metadata"].get(key) == {}:
                del new["metadata"][key]
        if new["metadata"].get("managedFields") == [{}]:
            # The documented way to reset ownership: the object is stored with none at all.
            del new["metadata"]["managedFields"]
        elif entry is not None:
            managed.record_update(old, new, entry, managed.list_keys_for(rt), rt.status)
        if rt is CRD_TYPE:
            crd_status(new, old)
        if old is not None and _without_times(old) == _without_times(new):
            return self.present(rt, old)
        if opts.dry_run:
            if old is None:
                new["metadata"].pop("resourceVersion", None)
            return self.present(rt, new)
        if (
            old is not None
            and old["metadata"].get("deletionTimestamp")
            and not new["metadata"].get("finalizers")
        ):
            self.store.put(rt, new)
            return self.present(rt, self.remove(rt, new))
        stored = self.store.put(rt, new)
        if rt is CRD_TYPE:
            self.registry.set_crd(stored)
        self.notify(rt, old, stored)
        return self.present(rt, stored)

    # -------------------------------------------------------------- controller-side writes

    def put_internal(
        self, rt: ResourceType, obj: Obj, *, manager: str, subresource: str = ""
    ) -> Obj:
        """A write by an in-cluster controller: no admission, but managedFields and
        resourceVersion as for any Update, and no-op writes skipped."""
        meta = obj["metadata"]
        old = self.store.find(rt, meta.get("namespace", ""), meta["name"])
        new = copy.deepcopy(obj)
        if old is None:
            self._fresh_meta(rt, new)
            if subresource == "status" and "status" in obj:
                new["status"] = copy.deepcopy(obj["status"])
            if rt.generation:
                new["metadata"]["generation"] = 1
            apply_defaults(rt, new, None, self.alloc)
        elif rt.generation and old.get("spec") != new.get("spec"):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        entry = managed.Entry(manager, "Update", rt.api_version, subresource, now())
        managed.record_update(old, new, entry, managed.list_keys_for(rt), rt.status)
        if old is not None and _without_times(old) == _without_times(new):
            return self.present(rt, old)
        stored = self.store.put(rt, new)
        self.notify(rt, old, stored)
        return self.present(rt, stored)
