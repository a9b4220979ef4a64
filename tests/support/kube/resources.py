"""The resource types the fake serves: built-in kinds plus those that CRDs add at runtime."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS = ("get", "patch", "update")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False  # has a /status subresource
    scale: bool = False  # has a /scale subresource (autoscaling/v1 Scale over spec.replicas)
    # Only kinds whose registry strategy maintains metadata.generation get one (ConfigMaps,
    # Services, Pods... do not).
    generation: bool = False
    verbs: tuple[str, ...] = ALL_VERBS
    # Custom resources: the CRD's version entry (schema, printer columns); None for built-ins.
    crd_version: Obj | None = field(default=None, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`deployments.apps`, `configmaps`: how the real server names a resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def builtin(self) -> bool:
        return self.crd_version is None

    @property
    def schema(self) -> Obj | None:
        if self.crd_version is None:
            return None
        schema = (self.crd_version.get("schema") or {}).get("openAPIV3Schema")
        return schema if isinstance(schema, dict) else None


def _rt(
    group: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    status: bool = False,
    scale: bool = False,
    generation: bool = False,
    all_: bool = False,
    version: str = "v1",
    verbs: tuple[str, ...] = ALL_VERBS,
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        namespaced=namespaced,
        short_names=short,
        categories=("all",) if all_ else (),
        status=status,
        scale=scale,
        generation=generation,
        verbs=verbs,
    )


_NO_COLLECTION_DELETE = tuple(v for v in ALL_VERBS if v != "deletecollection")

BUILTINS: tuple[ResourceType, ...] = (
    _rt(
        "",
        "namespaces",
        "Namespace",
        namespaced=False,
        short=("ns",),
        status=True,
        verbs=_NO_COLLECTION_DELETE,
    ),
    _rt("", "nodes", "Node", namespaced=False, short=("no",), status=True),
    _rt("", "configmaps", "ConfigMap", short=("cm",)),
    _rt("", "secrets", "Secret"),
    _rt(
        "",
        "services",
        "Service",
        short=("svc",),
        status=True,
        all_=True,
        verbs=_NO_COLLECTION_DELETE,
    ),
    _rt("", "serviceaccounts", "ServiceAccount", short=("sa",)),
    _rt("", "resourcequotas", "ResourceQuota", short=("quota",), status=True),
    _rt("", "persistentvolumeclaims", "PersistentVolumeClaim", short=("pvc",), status=True),
    _rt("", "pods", "Pod", short=("po",), status=True, all_=True),
    _rt("", "events", "Event", short=("ev",)),
    _rt(
        "apps",
        "deployments",
        "Deployment",
        short=("deploy",),
        status=True,
        scale=True,
        generation=True,
        all_=True,
    ),
    _rt(
        "apps",
        "statefulsets",
        "StatefulSet",
        short=("sts",),
        status=True,
        scale=True,
        generation=True,
        all_=True,
    ),
    _rt("apps", "daemonsets", "DaemonSet", short=("ds",), status=True, generation=True, all_=True),
    _rt(
        "apps",
        "replicasets",
        "ReplicaSet",
        short=("rs",),
        status=True,
        scale=True,
        generation=True,
        all_=True,
    ),
    _rt("batch", "jobs", "Job", status=True, generation=True, all_=True),
    _rt("batch", "cronjobs", "CronJob", short=("cj",), status=True, generation=True, all_=True),
    _rt("networking.k8s.io", "ingresses", "Ingress", short=("ing",), status=True, generation=True),
    _rt(
        "networking.k8s.io", "networkpolicies", "NetworkPolicy", short=("netpol",), generation=True
    ),
    _rt(
        "policy",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        short=("pdb",),
        status=True,
        generation=True,
    ),
    _rt(
        "autoscaling",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        short=("hpa",),
        status=True,
        version="v2",
        all_=True,
    ),
    _rt("rbac.authorization.k8s.io", "roles", "Role"),
    _rt("rbac.authorization.k8s.io", "rolebindings", "RoleBinding"),
    _rt("rbac.authorization.k8s.io", "clusterroles", "ClusterRole", namespaced=False),
    _rt("rbac.authorization.k8s.io", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    _rt(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short=("crd", "crds"),
        status=True,
        generation=True,
    ),
)

CRD_TYPE = next(rt for rt in BUILTINS if rt.kind == "CustomResourceDefinition")
NAMESPACE_TYPE = next(rt for rt in BUILTINS if rt.kind == "Namespace")


def types_from_crd(crd: Obj) -> list[ResourceType]:
    """One type per served version of a CRD."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    plural = str(names.get("plural", ""))
    kind = str(names.get("kind", ""))
    out = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        out.append(
            ResourceType(
                group=str(spec.get("group", "")),
                version=str(version.get("name", "")),
                plural=plural,
                singular=str(names.get("singular") or kind.lower()),
                kind=kind,
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status="status" in subresources,
                generation=True,
                crd_version=copy.deepcopy(version),
            )
        )
    return out


class Registry:
    """Which (group, version, plural) the server answers for; CRDs add and remove entries."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._by_crd: dict[str, list[ResourceType]] = {}
        for rt in BUILTINS:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def group_versions(self) -> dict[str, list[str]]:
        """group -> served versions, preferred (the CRD storage version or first) first."""
        out: dict[str, list[str]] = {}
        for rt in self._types.values():
            versions = out.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._types.values() if (rt.group, rt.version) == (group, version)]

    def find(self, kind_or_name: str) -> ResourceType:
        """A type by Kind, plural, singular or short name (case-insensitive), for test hooks."""
        wanted = kind_or_name.lower()
        group = ""
        if "." in wanted:
            wanted, group = wanted.split(".", 1)
        for rt in self._types.values():
            if group and rt.group != group:
                continue
            if wanted in (rt.kind.lower(), rt.plural, rt.singular, *rt.short_names):
                return rt
        raise KeyError(f"the fake serves no resource type {kind_or_name!r}")

    def set_crd(self, crd: Obj) -> None:
        self.remove_crd(str(crd["metadata"]["name"]))
        types = types_from_crd(crd)
        self._by_crd[str(crd["metadata"]["name"])] = types
        for rt in types:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def remove_crd(self, name: str) -> list[ResourceType]:
        types = self._by_crd.pop(name, [])
        for rt in types:
            self._types.pop((rt.group, rt.version, rt.plural), None)
        return types
