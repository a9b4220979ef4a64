"""Client-side helpers for runtime and cluster tests against the fake Kubernetes API server."""

from __future__ import annotations

from typing import Any

import yaml

from tests.support.kube import FakeKube

CLUSTER_LABEL = "openpitrix.io/cluster"


def kubeconfig(
    kube: FakeKube, *, server: str | None = None, token: str | None = None, **user_extra: Any
) -> str:
    """The fake's own kubeconfig (inline CA and token), optionally spoiled."""
    doc = kube.kubeconfig_dict()
    if server is not None:
        doc["clusters"][0]["cluster"]["server"] = server
    user = doc["users"][0]["user"]
    if token is not None:
        user["token"] = token
    user.update(user_extra)
    return yaml.safe_dump(doc)


def owned(kube: FakeKube, kind: str, namespace: str, cluster_id: str) -> list[dict[str, Any]]:
    """The objects of a kind in a namespace that carry the cluster's label."""
    return [
        o
        for o in kube.objects(kind, namespace)
        if (o["metadata"].get("labels") or {}).get(CLUSTER_LABEL) == cluster_id
    ]
