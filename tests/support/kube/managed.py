"""Server-side apply and managedFields: which manager owns which field, and conflicts."""

# The model follows structured-merge-diff in shape (FieldsV1 with `f:` fields and `k:{...}` keyed
# list items, one entry per manager/operation/subresource), simplified:
# - ownership is tracked for leaf values and keyed list items; maps are never owned as a whole
#   (real sets also own the map nodes an Update created);
# - lists without merge keys are atomic (real `set` lists such as finalizers are per item);
# - `null` in an applied configuration is ignored rather than meaning "owned but absent";
# - a conflict is an applied leaf whose value differs from the live one while another manager
#   owns it; applying the same value shares ownership, as in the real server.

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.kube.crds import crd_list_keys
from tests.support.kube.patches import KEY_DEFAULTS, builtin_list_keys
from tests.support.kube.resources import ResourceType
from tests.support.kube.status import ApiError

Obj = dict[str, Any]
Path = tuple[str, ...]
Names = tuple[str, ...]
ListKeys = Callable[[Names], tuple[str, ...] | None]

_MEMBER = object()  # marks a keyed list item's own path among the leaves
_META_SKIP = {
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
}


@dataclass
class Entry:
    manager: str
    operation: str  # Apply | Update
    api_version: str
    subresource: str
    time: str
    paths: set[Path] = field(default_factory=set)

    def same_slot(self, other: Entry) -> bool:
        return (self.manager, self.operation, self.subresource) == (
            other.manager,
            other.operation,
            other.subresource,
        )


def _item_key(item: Obj, keys: tuple[str, ...]) -> str:
    values = {k: item.get(k, KEY_DEFAULTS.get(k)) for k in keys}
    return "k:" + json.dumps(
        {k: v for k, v in values.items() if v is not None}, sort_keys=True, separators=(",", ":")
    )


def _keyed(items: list[Any], keys: tuple[str, ...] | None) -> bool:
    return keys is not None and all(isinstance(item, dict) for item in items)


def leaves(obj: Obj, list_keys: ListKeys, subresource: str, has_status: bool) -> dict[Path, Any]:
    """Every owned-able path of `obj` with its value, limited to what the (sub)resource writes."""
    out: dict[Path, Any] = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if has_status and (key == "status") != (subresource == "status"):
            continue
        if key == "metadata" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in _META_SKIP}
            if not value:
                continue
        _walk(value, (key,), (f"f:{key}",), list_keys, out)
    return out


def _walk(node: Any, names: Names, prefix: Path, list_keys: ListKeys, out: dict[Path, Any]) -> None:
    if isinstance(node, dict):
        if not node:
            out[prefix] = {}
        for key, value in node.items():
            if value is not None:
                _walk(value, (*names, key), (*prefix, f"f:{key}"), list_keys, out)
    elif isinstance(node, list) and node and _keyed(node, list_keys(names)):
        keys = list_keys(names)
        assert keys is not None
        for item in node:
            path = (*prefix, _item_key(item, keys))
            out[path] = _MEMBER
            _walk(item, names, path, list_keys, out)
    else:
        out[prefix] = node


def to_fields_v1(paths: set[Path]) -> Obj:
    root: Obj = {}
    for path in sorted(paths, key=len):
        node = root
        for part in path:
            node = node.setdefault(part, {})
    for path in paths:
        node = root
        for part in path:
            node = node[part]
        if node and path[-1].startswith("k:"):
            node["."] = {}
    return root


def from_fields_v1(fields: Obj, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for key, child in fields.items():
        if key == ".":
            out.add(prefix)
            continue
        path = (*prefix, key)
        if isinstance(child, dict) and child:
            out |= from_fields_v1(child, path)
        else:
            out.add(path)
    return out


def read_entries(obj: Obj | None) -> list[Entry]:
    entries = []
    for raw in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        entries.append(
            Entry(
                manager=str(raw.get("manager", "")),
                operation=str(raw.get("operation", "Update")),
                api_version=str(raw.get("apiVersion", "")),
                subresource=str(raw.get("subresource", "")),
                time=str(raw.get("time", "")),
                paths=from_fields_v1(raw.get("fieldsV1") or {}),
            )
        )
    return entries


def write_entries(obj: Obj, entries: list[Entry]) -> None:
    rendered = []
    for e in entries:
        if not e.paths:
            continue
        raw: Obj = {"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version}
        raw["time"] = e.time
        raw["fieldsType"] = "FieldsV1"
        raw["fieldsV1"] = to_fields_v1(e.paths)
        if e.subresource:
            raw["subresource"] = e.subresource
        rendered.append(raw)
    meta = obj.setdefault("metadata", {})
    if rendered:
        meta["managedFields"] = rendered
    else:
        meta.pop("managedFields", None)


def _upsert(entries: list[Entry], new: Entry) -> Entry:
    for e in entries:
        if e.same_slot(new):
            e.api_version, e.time = new.api_version, new.time
            return e
    entries.append(new)
    return new


def record_update(
    old: Obj | None,
    new: Obj,
    entry: Entry,
    list_keys: ListKeys,
    has_status: bool,
) -> None:
    """An Update (create, PUT, non-apply PATCH): the manager takes every field it changed,
    from whoever owned it, without conflicts; fields it removed are owned by nobody.
    The ownership it starts from is `new`'s managedFields (the caller puts the live ones
    there unless the client sent its own, which the real server honours)."""
    entries = read_entries(new)
    before = leaves(old, list_keys, entry.subresource, has_status) if old else {}
    after = leaves(new, list_keys, entry.subresource, has_status)
    changed = {p for p, v in after.items() if p not in before or before[p] != v}
    removed = set(before) - set(after)
    for e in entries:
        e.paths -= changed | removed
    mine = _upsert(entries, entry)
    mine.paths |= changed
    write_entries(new, entries)


def _value_at(obj: Any, path: Path) -> Any:
    node = obj
    for part in path:
        if part.startswith("f:") and isinstance(node, dict):
            node = node.get(part[2:])
        elif part.startswith("k:") and isinstance(node, list):
            wanted = json.loads(part[2:])
            node = next(
                (
                    item
                    for item in node
                    if isinstance(item, dict)
                    and all(item.get(k, KEY_DEFAULTS.get(k)) == v for k, v in wanted.items())
                ),
                None,
            )
        else:
            return None
    return node


def _remove_at(obj: Any, path: Path) -> None:
    parent = _value_at(obj, path[:-1])
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith("k:") and isinstance(parent, list):
        item = _value_at(parent, (last,))
        if item is not None:
            parent.remove(item)


def _merge(live: Any, applied: Any, names: Names, list_keys: ListKeys) -> Any:
    if isinstance(applied, dict) and isinstance(live, dict):
        out = dict(live)
        for key, value in applied.items():
            if value is not None:
                out[key] = _merge(live.get(key), value, (*names, key), list_keys)
        return out
    keys = list_keys(names)
    if isinstance(applied, list) and isinstance(live, list) and _keyed(applied + live, keys):
        assert keys is not None
        out_list = list(live)
        for item in applied:
            path = (_item_key(item, keys),)
            match = _value_at(out_list, path)
            if match is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[out_list.index(match)] = _merge(match, item, names, list_keys)
        return out_list
    return copy.deepcopy(applied)


def _describe(path: Path) -> str:
    out = ""
    for part in path:
        if part.startswith("f:"):
            out += "." + part[2:]
        else:
            keys = json.loads(part[2:])
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
    return out


def _conflict_error(conflicts: list[tuple[Entry, Path]]) -> ApiError:
    def who(e: Entry) -> str:
        sub = f' with subresource "{e.subresource}"' if e.subresource else ""
        return f'"{e.manager}"{sub} using {e.api_version}'

    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {who(e)}",
            "field": _describe(p),
        }
        for e, p in conflicts
    ]
    n = len(conflicts)
    if n == 1:
        e, p = conflicts[0]
        text = f"conflict with {who(e)}: {_describe(p)}"
    else:
        text = "conflicts with " + "; ".join(f"{who(e)}: {_describe(p)}" for e, p in conflicts)
    return ApiError(
        409,
        f"Apply failed with {n} conflict{'s' if n > 1 else ''}: {text}",
        reason="Conflict",
        details={"causes": causes},
    )


def apply(
    live: Obj,
    config: Obj,
    entry: Entry,
    *,
    force: bool,
    list_keys: ListKeys,
    has_status: bool,
) -> Obj:
    """The object after `entry.manager` applies `config` to `live` (an empty {} when the
    object does not exist yet); raises the 409 Conflict Status unless `force`."""
    entries = read_entries(live)
    sub = entry.subresource
    applied = leaves(config, list_keys, sub, has_status)
    current = leaves(live, list_keys, sub, has_status) if live else {}
    conflicts: list[tuple[Entry, Path]] = []
    for e in entries:
        if e.same_slot(entry):
            continue
        for path in sorted(e.paths & set(applied)):
            if applied[path] is not _MEMBER and current.get(path) != applied[path]:
                conflicts.append((e, path))
    if conflicts and not force:
        raise _conflict_error(conflicts)
    for e, path in conflicts:
        e.paths.discard(path)

    result = copy.deepcopy(live)
    for key, value in config.items():
        if key in ("apiVersion", "kind") or value is None:
            continue
        if has_status and (key == "status") != (sub == "status") and key != "metadata":
            continue
        if key == "metadata":
            value = {k: v for k, v in value.items() if k not in _META_SKIP or k == "name"}
            if live:
                value.pop("name", None)
        result[key] = _merge(result.get(key), value, (key,), list_keys)

    previous = next((set(e.paths) for e in entries if e.same_slot(entry)), set())
    others: set[Path] = set()
    for e in entries:
        if not e.same_slot(entry):
            others |= e.paths
    dropped = previous - set(applied)
    for path in sorted(dropped, key=len, reverse=True):
        still_owned = any(p[: len(path)] == path for p in others)
        if not still_owned:
            _remove_at(result, path)
    mine = _upsert(entries, entry)
    mine.paths = set(applied)
    write_entries(result, entries)
    return result


def list_keys_for(rt: ResourceType) -> ListKeys:
    if not rt.builtin:
        return crd_list_keys(rt)

    def keys(names: tuple[str, ...]) -> tuple[str, ...] | None:
        found = builtin_list_keys(names)
        return found[1] if found else None

    return keys
