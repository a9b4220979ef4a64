"""The /scale subresource: an autoscaling/v1 Scale view of spec.replicas."""

# Writes through it are recorded in managedFields with subresource "scale", so a later apply of
# replicas by another manager conflicts with them, as on a real cluster.

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from tests.support.kube import managed, status
from tests.support.kube.api import APPLY, JSON_PATCH, STRATEGIC, Api, WriteOptions
from tests.support.kube.patches import json_patch, merge_patch, strategic_merge
from tests.support.kube.resources import ResourceType
from tests.support.kube.status import bad_request
from tests.support.kube.store import now

Obj = dict[str, Any]


def scale_of(obj: Obj) -> Obj:
    """The autoscaling/v1 Scale view of a Deployment, StatefulSet or ReplicaSet."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    selector = spec.get("selector") or {}
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = (
            expr.get("operator"),
            expr.get("key"),
            ",".join(expr.get("values") or []),
        )
        terms.append(
            {
                "In": f"{key} in ({values})",
                "NotIn": f"{key} notin ({values})",
                "Exists": str(key),
                "DoesNotExist": f"!{key}",
            }.get(str(op), "")
        )
    kept = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in kept if k in meta},
        "spec": {"replicas": spec.get("replicas", 1)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": ",".join(terms),
        },
    }


def write_scale(
    api: Api,
    rt: ResourceType,
    namespace: str,
    name: str,
    patch_type: str | None,
    body: Any,
    opts: WriteOptions,
) -> Obj:
    """PUT (patch_type None, body a Scale) or PATCH (body the raw patch) of /scale."""
    old = api.existing(rt, namespace, name)
    current = scale_of(old)
    try:
        if patch_type is None:
            scale = body
        elif patch_type == APPLY:
            if not opts.manager_given:
                raise bad_request("fieldManager is required for apply requests")
            scale = merge_patch(current, yaml.safe_load(body.decode() or "{}"))
        elif patch_type == JSON_PATCH:
            scale = json_patch(current, json.loads(body or b"null"))
        else:
            scale = (strategic_merge if patch_type == STRATEGIC else merge_patch)(
                current, json.loads(body or b"null")
            )
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"error decoding patch: {exc}") from None
    if not isinstance(scale, dict) or scale.get("kind", "Scale") != "Scale":
        raise bad_request("the body of the request must be an autoscaling/v1 Scale")
    given = (scale.get("metadata") or {}).get("resourceVersion")
    if given and given != old["metadata"]["resourceVersion"]:
        raise status.stale(rt, name)
    replicas = (scale.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise status.field_invalid(
            rt,
            name,
            "spec.replicas",
            f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0",
        )
    new = copy.deepcopy(old)
    new.setdefault("spec", {})["replicas"] = replicas
    opts.subresource = "scale"
    operation = "Apply" if patch_type == APPLY else "Update"
    entry = managed.Entry(opts.manager, operation, rt.api_version, "scale", now())
    return scale_of(api.commit(rt, old, new, opts, entry))
