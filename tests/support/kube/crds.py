"""CustomResourceDefinitions: their validation, status and structural-schema checks."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from tests.support.kube.resources import ResourceType
from tests.support.kube.store import now

Obj = dict[str, Any]
Names = tuple[str, ...]
Cause = tuple[str, str, str]


def crd_causes(obj: Obj) -> list[Cause]:
    """Why a CRD may not be stored (422 causes), as the apiextensions validation says."""
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    causes: list[Cause] = []
    expected = f"{names.get('plural')}.{spec.get('group')}"
    if obj["metadata"].get("name") != expected:
        causes.append(
            (
                "metadata.name",
                "FieldValueInvalid",
                f'Invalid value: "{obj["metadata"].get("name")}": '
                'must be spec.names.plural+"."+spec.group',
            )
        )
    for key in ("plural", "kind"):
        if not names.get(key):
            causes.append((f"spec.names.{key}", "FieldValueRequired", "Required value"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            (
                "spec.scope",
                "FieldValueNotSupported",
                f'Unsupported value: "{spec.get("scope")}": '
                'supported values: "Cluster", "Namespaced"',
            )
        )
    versions = spec.get("versions") or []
    if not versions:
        causes.append(
            (
                "spec.versions",
                "FieldValueInvalid",
                "Invalid value: null: must have at least one version",
            )
        )
    if versions and sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(
            (
                "spec.versions",
                "FieldValueInvalid",
                "Invalid value: ...: must have exactly one version marked as storage version",
            )
        )
    for i, version in enumerate(versions):
        if not (version.get("schema") or {}).get("openAPIV3Schema"):
            causes.append(
                (
                    f"spec.versions[{i}].schema.openAPIV3Schema",
                    "FieldValueRequired",
                    "Required value: schemas are required",
                )
            )
    return causes


def crd_status(crd: Obj, old: Obj | None) -> None:
    """What the CRD controllers report at once: names accepted, established."""
    spec = crd.get("spec") or {}
    stored = set(((old or {}).get("status") or {}).get("storedVersions") or [])
    stored |= {v["name"] for v in spec.get("versions") or [] if v.get("storage")}
    at = now()
    crd["status"] = {
        "acceptedNames": copy.deepcopy(spec.get("names") or {}),
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": at,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": at,
            },
        ],
        "storedVersions": sorted(stored),
    }


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _type_ok(value: Any, wanted: str) -> bool:
    if wanted in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES.get(wanted, (object,)))


def check_custom(obj: Obj, rt: ResourceType) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Prune `obj` (in place) to its CRD schema; returns (pruned paths, invalid causes)."""
    schema = rt.schema
    if schema is None:
        return [], []
    pruned: list[str] = []
    causes: list[tuple[str, str, str]] = []

    def walk(node: Any, sch: Obj, shown: str) -> None:
        if node is None:
            if not sch.get("nullable"):
                causes.append((shown, "FieldValueTypeInvalid", 'Invalid value: "null"'))
            return
        wanted = sch.get("type")
        if isinstance(wanted, str) and not _type_ok(node, wanted):
            got = type(node).__name__
            got = {
                "dict": "object",
                "list": "array",
                "str": "string",
                "int": "integer",
                "float": "number",
                "bool": "boolean",
            }.get(got, got)
            causes.append(
                (
                    shown,
                    "FieldValueTypeInvalid",
                    f'Invalid value: "{got}": {shown} in body must be of type {wanted}: "{got}"',
                )
            )
            return
        enum = sch.get("enum")
        if isinstance(enum, list) and node not in enum:
            values = ", ".join(f'"{v}"' for v in enum)
            causes.append(
                (
                    shown,
                    "FieldValueNotSupported",
                    f"Unsupported value: {json.dumps(node)}: supported values: {values}",
                )
            )
        if isinstance(node, dict):
            props = sch.get("properties") or {}
            extra = sch.get("additionalProperties")
            preserve = sch.get("x-kubernetes-preserve-unknown-fields") is True
            for key in sch.get("required") or []:
                if key not in node:
                    causes.append((f"{shown}.{key}", "FieldValueRequired", "Required value"))
            for key in list(node):
                here = f"{shown}.{key}"
                if key in props:
                    walk(node[key], props[key], here)
                elif isinstance(extra, dict):
                    walk(node[key], extra, here)
                elif not preserve and extra is not True:
                    pruned.append(here)
                    del node[key]
        elif isinstance(node, list) and isinstance(sch.get("items"), dict):
            for i, item in enumerate(node):
                walk(item, sch["items"], f"{shown}[{i}]")

    for key in list(obj):
        if key in ("apiVersion", "kind", "metadata"):
            continue
        props = schema.get("properties") or {}
        if key in props:
            walk(obj[key], props[key], key)
        elif schema.get("x-kubernetes-preserve-unknown-fields") is not True:
            pruned.append(key)
            del obj[key]
    return pruned, [(f, r, m) for f, r, m in causes]


def crd_list_keys(rt: ResourceType) -> Callable[[Names], tuple[str, ...] | None]:
    """The apply list-map keys a CRD schema declares (x-kubernetes-list-type: map)."""
    schema = rt.schema or {}

    def keys(names: Names) -> tuple[str, ...] | None:
        node: Any = schema
        for i, name in enumerate(names):
            if not isinstance(node, dict):
                return None
            node = (node.get("properties") or {}).get(name)
            if i < len(names) - 1 and isinstance(node, dict) and node.get("type") == "array":
                node = node.get("items")
        if isinstance(node, dict) and node.get("x-kubernetes-list-type") == "map":
            return tuple(node.get("x-kubernetes-list-map-keys") or ()) or None
        return None

    return keys
