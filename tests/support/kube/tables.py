"""Server-side printing: the meta.k8s.io/v1 Table that `kubectl get` asks for."""

# Columns follow the real printers for the common kinds and a CRD's additionalPrinterColumns
# (simple `.a.b` JSONPaths) for custom resources; other kinds get NAME and AGE.

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tests.support.kube.resources import ResourceType

Obj = dict[str, Any]
Column = tuple[str, str, Callable[[Obj], Any]]  # (name, type, cell)


def age(obj: Obj) -> str:
    stamp = obj.get("metadata", {}).get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    created = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    seconds = max(0, int((datetime.now(UTC) - created).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _st(obj: Obj) -> Obj:
    return obj.get("status") or {}


def _sp(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _pod_ready(obj: Obj) -> str:
    statuses = _st(obj).get("containerStatuses") or []
    total = len(_sp(obj).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(obj: Obj) -> str:
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    for s in _st(obj).get("containerStatuses") or []:
        waiting = (s.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return str(waiting["reason"])
    return str(_st(obj).get("phase", "Pending"))


def _ports(obj: Obj) -> str:
    out = []
    for p in _sp(obj).get("ports") or []:
        node = f":{p['nodePort']}" if p.get("nodePort") else ""
        out.append(f"{p.get('port')}{node}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _external(obj: Obj) -> str:
    ingress = (_st(obj).get("loadBalancer") or {}).get("ingress") or []
    ips = [i.get("ip") or i.get("hostname") for i in ingress]
    if ips:
        return ",".join(str(i) for i in ips)
    return "<pending>" if _sp(obj).get("type") == "LoadBalancer" else "<none>"


def _involved(ref: Obj) -> str:
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


_NAME: Column = ("Name", "string", lambda o: o["metadata"]["name"])
_AGE: Column = ("Age", "string", age)
_COLUMNS: dict[str, list[Column]] = {
    "Pod": [
        ("Ready", "string", _pod_ready),
        ("Status", "string", _pod_status),
        (
            "Restarts",
            "string",
            lambda o: str(
                sum(s.get("restartCount", 0) for s in _st(o).get("containerStatuses") or [])
            ),
        ),
    ],
    "Deployment": [
        (
            "Ready",
            "string",
            lambda o: f"{_st(o).get('readyReplicas', 0)}/{_sp(o).get('replicas', 1)}",
        ),
        ("Up-to-date", "integer", lambda o: _st(o).get("updatedReplicas", 0)),
        ("Available", "integer", lambda o: _st(o).get("availableReplicas", 0)),
    ],
    "StatefulSet": [
        (
            "Ready",
            "string",
            lambda o: f"{_st(o).get('readyReplicas', 0)}/{_sp(o).get('replicas', 1)}",
        ),
    ],
    "ReplicaSet": [
        ("Desired", "integer", lambda o: _sp(o).get("replicas", 1)),
        ("Current", "integer", lambda o: _st(o).get("replicas", 0)),
        ("Ready", "integer", lambda o: _st(o).get("readyReplicas", 0)),
    ],
    "DaemonSet": [
        ("Desired", "integer", lambda o: _st(o).get("desiredNumberScheduled", 0)),
        ("Current", "integer", lambda o: _st(o).get("currentNumberScheduled", 0)),
        ("Ready", "integer", lambda o: _st(o).get("numberReady", 0)),
    ],
    "Job": [
        (
            "Status",
            "string",
            lambda o: (
                "Complete"
                if _st(o).get("succeeded")
                else ("Failed" if _st(o).get("failed") else "Running")
            ),
        ),
        (
            "Completions",
            "string",
            lambda o: f"{_st(o).get('succeeded', 0)}/{_sp(o).get('completions', 1)}",
        ),
    ],
    "Service": [
        ("Type", "string", lambda o: _sp(o).get("type", "ClusterIP")),
        ("Cluster-IP", "string", lambda o: _sp(o).get("clusterIP", "<none>")),
        ("External-IP", "string", _external),
        ("Port(s)", "string", _ports),
    ],
    "Namespace": [("Status", "string", lambda o: _st(o).get("phase", "Active"))],
    "ConfigMap": [
        ("Data", "integer", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}))
    ],
    "Secret": [
        ("Type", "string", lambda o: o.get("type", "Opaque")),
        ("Data", "integer", lambda o: len(o.get("data") or {})),
    ],
    "PersistentVolumeClaim": [
        ("Status", "string", lambda o: _st(o).get("phase", "Pending")),
        ("Volume", "string", lambda o: _sp(o).get("volumeName", "")),
    ],
    "Event": [
        ("Type", "string", lambda o: o.get("type", "")),
        ("Reason", "string", lambda o: o.get("reason", "")),
        (
            "Object",
            "string",
            lambda o: _involved(o.get("involvedObject") or {}),
        ),
        ("Message", "string", lambda o: o.get("message", "")),
    ],
}


def _jsonpath(obj: Obj, path: str) -> Any:
    node: Any = obj
    for part in path.strip().lstrip(".").split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _printer_column(spec: Obj) -> Column:
    path = str(spec.get("jsonPath", ""))

    def cell(obj: Obj) -> Any:
        return _jsonpath(obj, path)

    return (str(spec.get("name")), str(spec.get("type", "string")), cell)


def columns(rt: ResourceType) -> list[Column]:
    if not rt.builtin:
        extra = [
            _printer_column(c) for c in (rt.crd_version or {}).get("additionalPrinterColumns") or []
        ]
        return [_NAME, *extra] + ([] if any(c[0] == "Age" for c in extra) else [_AGE])
    return [_NAME, *_COLUMNS.get(rt.kind, []), _AGE]


def table(rt: ResourceType, objects: list[Obj], resource_version: str, include: str) -> Obj:
    """include: the includeObject parameter (None | Metadata | Object; Metadata by default)."""
    cols = columns(rt)
    rows = []
    for obj in objects:
        row: Obj = {"cells": [cell(obj) for _, _, cell in cols]}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {
                "name": name,
                "type": kind,
                "format": "name" if name == "Name" else "",
                "description": name,
                "priority": 0,
            }
            for name, kind, _ in cols
        ],
        "rows": rows,
    }
