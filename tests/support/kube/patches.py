"""JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch."""

# Strategic merge follows the built-in types' patch strategies for the lists that charts and
# kubectl touch (containers, env, ports, volumes, ... merged by key; `finalizers` merged as a set)
# and honours kubectl's directives: `$patch` (replace/delete/merge), `$retainKeys`,
# `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`. Other lists are replaced, as
# for fields without a patch strategy.

from __future__ import annotations

import copy
import json
from typing import Any

from tests.support.kube.status import ApiError, bad_request

Obj = dict[str, Any]
Names = tuple[str, ...]

_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
# field name -> (strategic merge key, server-side apply list-map keys)
_LIST_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "containers": ("name", ("name",)),
    "initContainers": ("name", ("name",)),
    "ephemeralContainers": ("name", ("name",)),
    "env": ("name", ("name",)),
    "volumes": ("name", ("name",)),
    "volumeMounts": ("mountPath", ("mountPath",)),
    "volumeDevices": ("devicePath", ("devicePath",)),
    "imagePullSecrets": ("name", ("name",)),
    "hostAliases": ("ip", ("ip",)),
    "conditions": ("type", ("type",)),
    "ownerReferences": ("uid", ("uid",)),
    "resourceClaims": ("name", ("name",)),
    "topologySpreadConstraints": ("topologyKey", ("topologyKey", "whenUnsatisfiable")),
}
_PRIMITIVE_MERGE = ("finalizers",)
# Defaults the server fills in for list-map keys, so `k:{...}` matches what gets stored.
KEY_DEFAULTS = {"protocol": "TCP"}


def builtin_list_keys(names: Names) -> tuple[str, tuple[str, ...]] | None:
    """(strategic merge key, apply keys) of the list at field path `names`, None if atomic."""
    if not names:
        return None
    last = names[-1]
    if last == "ports":
        if len(names) >= 2 and names[-2] in _CONTAINER_LISTS:
            return "containerPort", ("containerPort", "protocol")
        if names == ("spec", "ports"):
            return "port", ("port", "protocol")
        return None
    if last == "conditions" and names[0] != "status":
        return None
    return _LIST_KEYS.get(last)


# ----------------------------------------------------------------------------- merge patch


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ------------------------------------------------------------------------- strategic merge

_DELETE = object()


def strategic_merge(target: Any, patch: Any, names: Names = ()) -> Any:
    result = _smp(target, patch, names)
    return {} if result is _DELETE else result


def _strip(value: Any) -> Any:
    """A patch fragment used as a whole new value: directives removed."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and "$patch" in v)]
    return value


def _smp(target: Any, patch: Any, names: Names) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return _strip(patch)
    if directive not in (None, "merge"):
        raise bad_request(f"Unknown patch type: {directive}")
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = list(value or [])
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            drop = list(value or [])
            result[field] = [v for v in result.get(field) or [] if v not in drop]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _smp(result.get(key), value, (*names, key))
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, (*names, key))
        else:
            result[key] = value
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(result[field], order, (*names, field))
    return result


def _merge_list(current: Any, patch: list[Any], names: Names) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [_strip(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    live: list[Any] = current if isinstance(current, list) else []
    if names[-1] in _PRIMITIVE_MERGE:
        return live + [v for v in patch if v not in live]
    keys = builtin_list_keys(names)
    if keys is None or not all(isinstance(item, dict) for item in patch):
        replaced: list[Any] = _strip(patch)
        return replaced
    merge_key = keys[0]
    result: list[Any] = copy.deepcopy(live)
    for item in patch:
        wanted = item.get(merge_key)
        index = next(
            (i for i, e in enumerate(result) if isinstance(e, dict) and e.get(merge_key) == wanted),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is not None:
            result[index] = _smp(result[index], item, names)
        else:
            result.append(_smp({}, item, names))
    return result


def _reorder(items: list[Any], order: list[Any], names: Names) -> list[Any]:
    keys = builtin_list_keys(names)
    if keys is None:
        ranked = {json.dumps(v, sort_keys=True): i for i, v in enumerate(order)}

        def rank(v: Any) -> int:
            return ranked.get(json.dumps(v, sort_keys=True), len(order))
    else:
        merge_key = keys[0]
        by_key = {
            json.dumps(o.get(merge_key)): i for i, o in enumerate(order) if isinstance(o, dict)
        }

        def rank(v: Any) -> int:
            value = v.get(merge_key) if isinstance(v, dict) else None
            return by_key.get(json.dumps(value), len(order))

    return sorted(items, key=rank)  # sorted() is stable: unlisted items keep their order


# ------------------------------------------------------------------------------ JSON patch


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, message, reason="Invalid")


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise bad_request(f"invalid JSON pointer: {path!r}")
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], op: str) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise _unprocessable(f"{op} operation does not apply: doc is missing path: {part}")
    return node, parts[-1]


def _get(doc: Any, parts: list[str], op: str) -> Any:
    if not parts:
        return doc
    parent, last = _parent(doc, parts, op)
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise _unprocessable(f"{op} operation does not apply: doc is missing key: /{'/'.join(parts)}")


def _remove(doc: Any, parts: list[str], op: str) -> Any:
    parent, last = _parent(doc, parts, op)
    value = _get(doc, parts, op)
    if isinstance(parent, dict):
        del parent[last]
    else:
        del parent[int(last)]
    return value


def _add(doc: Any, parts: list[str], value: Any, op: str) -> Any:
    if not parts:
        return value
    parent, last = _parent(doc, parts, op)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _unprocessable(f"{op} operation does not apply: index out of range: {last}")
    else:
        raise _unprocessable(f"{op} operation does not apply: doc is missing path: {last}")
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op:
            raise bad_request("invalid JSON patch operation")
        kind = op["op"]
        parts = _pointer(op.get("path"))
        if kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")), kind)
        elif kind == "remove":
            _remove(doc, parts, kind)
        elif kind == "replace":
            if not parts:
                doc = copy.deepcopy(op.get("value"))
                continue
            _get(doc, parts, kind)
            parent, last = _parent(doc, parts, kind)
            parent[int(last) if isinstance(parent, list) else last] = copy.deepcopy(op["value"])
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from"))
            value = (_remove if kind == "move" else _get)(doc, source, kind)
            doc = _add(doc, parts, copy.deepcopy(value), kind)
        elif kind == "test":
            if _get(doc, parts, kind) != op.get("value"):
                raise _unprocessable(f"testing value {op.get('path')} failed: test failed")
        else:
            raise bad_request(f"Unexpected kind: {kind}")
    return doc
