"""OpenAPI v3 discovery: the /openapi/v3 index and one document per group-version."""

# Documents list every path with its operations, `x-kubernetes-group-version-kind` and query
# parameters, which is what kubectl reads to learn that the server validates fields itself
# (`fieldValidation`) and so skips client-side schema validation. Built-in kinds carry no
# component schemas (kubectl then uses its compiled-in types for strategic merge patches); custom
# resources carry their CRD's openAPIV3Schema.

from __future__ import annotations

import hashlib
import json
from typing import Any

from tests.support.kube.discovery import VERSION
from tests.support.kube.resources import Registry, ResourceType

Obj = dict[str, Any]

_STRING = {"type": "string", "uniqueItems": True}
_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
_LIST_PARAMS = (
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
)


def _query(*names: str) -> list[Obj]:
    out = []
    for name in names:
        schema = (
            {"type": "boolean", "uniqueItems": True}
            if name in ("force", "watch", "allowWatchBookmarks", "sendInitialEvents")
            else _STRING
        )
        out.append({"name": name, "in": "query", "schema": schema})
    return out


def _prefix(rt: ResourceType) -> str:
    return f"/api/{rt.version}" if not rt.group else f"/apis/{rt.group}/{rt.version}"


def _op(
    rt: ResourceType, action: str, verb: str, params: list[Obj], body: list[str] | None = None
) -> Obj:
    ref = (
        {"$ref": f"#/components/schemas/{_schema_name(rt)}"}
        if not rt.builtin
        else {"type": "object"}
    )
    op: Obj = {
        "operationId": f"{verb}{rt.kind}",
        "parameters": params,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": ref}}}
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": rt.group,
            "version": rt.version,
            "kind": rt.kind,
        },
    }
    if body:
        op["requestBody"] = {"content": {t: {"schema": ref} for t in body}, "required": True}
    return op


def _paths(rt: ResourceType) -> Obj:
    base = _prefix(rt) + ("/namespaces/{namespace}" if rt.namespaced else "")
    path_params = (
        [{"name": "namespace", "in": "path", "required": True, "schema": _STRING}]
        if rt.namespaced
        else []
    )
    name_param = [{"name": "name", "in": "path", "required": True, "schema": _STRING}]
    patch_types = [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ]
    if rt.builtin:
        patch_types.append("application/strategic-merge-patch+json")
    item = {
        "get": _op(rt, "get", "read", []),
        "put": _op(
            rt, "put", "replace", _query(*_WRITE_PARAMS), ["application/json", "application/yaml"]
        ),
        "patch": _op(rt, "patch", "patch", _query(*_WRITE_PARAMS, "force"), patch_types),
        "delete": _op(
            rt, "delete", "delete", _query("dryRun", "gracePeriodSeconds", "propagationPolicy")
        ),
        "parameters": name_param + path_params + _query("pretty"),
    }
    collection = {
        "get": _op(rt, "list", "list", _query(*_LIST_PARAMS)),
        "post": _op(
            rt, "post", "create", _query(*_WRITE_PARAMS), ["application/json", "application/yaml"]
        ),
        "parameters": path_params + _query("pretty"),
    }
    out = {f"{base}/{rt.plural}": collection, f"{base}/{rt.plural}/{{name}}": item}
    if rt.status:
        out[f"{base}/{rt.plural}/{{name}}/status"] = {
            "get": _op(rt, "get", "read", []),
            "put": _op(rt, "put", "replace", _query(*_WRITE_PARAMS), ["application/json"]),
            "patch": _op(rt, "patch", "patch", _query(*_WRITE_PARAMS, "force"), patch_types),
            "parameters": name_param + path_params + _query("pretty"),
        }
    if rt.scale:
        scale: Obj = {
            "get": _op(rt, "get", "read", []),
            "put": _op(rt, "put", "replace", _query(*_WRITE_PARAMS), ["application/json"]),
            "patch": _op(rt, "patch", "patch", _query(*_WRITE_PARAMS, "force"), patch_types),
        }
        for op in scale.values():
            op["x-kubernetes-group-version-kind"] = {
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
            }
        scale["parameters"] = name_param + path_params + _query("pretty")
        out[f"{base}/{rt.plural}/{{name}}/scale"] = scale
    return out


def _schema_name(rt: ResourceType) -> str:
    reversed_group = ".".join(reversed(rt.group.split(".")))
    return f"{reversed_group}.{rt.version}.{rt.kind}"


def group_version_doc(registry: Registry, group: str, version: str) -> Obj | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    paths: Obj = {}
    schemas: Obj = {}
    for rt in sorted(types, key=lambda t: t.plural):
        paths.update(_paths(rt))
        if not rt.builtin and rt.schema is not None:
            schema = json.loads(json.dumps(rt.schema))
            schema["x-kubernetes-group-version-kind"] = [
                {"group": rt.group, "version": rt.version, "kind": rt.kind}
            ]
            schemas[_schema_name(rt)] = schema
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _digest(doc: Obj) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()


def openapi_v3(registry: Registry, path: str, query: str) -> Obj | None:
    """The document for `path` under /openapi/v3, or None (404). /openapi/v2 is not served:
    kubectl uses v3 when the server has it, as it does against current clusters."""
    if path.rstrip("/") == "/openapi/v3":
        index: Obj = {}
        for group, versions in registry.group_versions().items():
            for version in versions:
                doc = group_version_doc(registry, group, version)
                key = f"api/{version}" if not group else f"apis/{group}/{version}"
                if doc is not None:
                    index[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={_digest(doc)}"}
        return {"paths": index}
    parts = path.removeprefix("/openapi/v3/").strip("/").split("/")
    del query  # any hash is answered with the current document, as the real server does
    if parts[0] == "api" and len(parts) == 2:
        return group_version_doc(registry, "", parts[1])
    if parts[0] == "apis" and len(parts) == 3:
        return group_version_doc(registry, parts[1], parts[2])
    return None
