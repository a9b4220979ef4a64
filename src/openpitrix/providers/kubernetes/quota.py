"""Will a release fit the namespace's ResourceQuotas? What its objects ask for, against what
each quota has left, before anything is applied.

An upgrade replaces the objects of the revision before, whose pods are already counted in the
quota's `used`, so only the difference counts. A DaemonSet runs one pod per node, a number the
namespace does not know: its pods are counted once, a lower bound.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")

# Kinds whose pod template runs `replicas` pods (default 1); DaemonSets count once (see above).
_REPLICATED = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}
_ONE_POD = {"DaemonSet", "Pod"}
# Quota keys for object counts, by kind.
_COUNTED = {
    "Service": "services",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "PersistentVolumeClaim": "persistentvolumeclaims",
}
# Keys with the same meaning: `cpu` in a quota is requests.cpu.
_ALIASES = {"cpu": "requests.cpu", "memory": "requests.memory"}


class QuantityError(ValueError):
    pass


def parse_quantity(value: object) -> Decimal:
    """A Kubernetes quantity ("250m", "1.5Gi", "2", 3) as a number."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if match is None or match.group(2) not in _SUFFIXES:
        raise QuantityError(f"not a quantity: {text!r}")
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation:
        raise QuantityError(f"not a quantity: {text!r}") from None


def _pod_template(obj: dict[str, Any]) -> tuple[dict[str, Any] | None, int]:
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind in _REPLICATED:
        replicas = spec.get("replicas")
        count = 1 if replicas is None else int(replicas)
        return (spec.get("template") or {}).get("spec"), count
    if kind == "Job":
        parallelism = spec.get("parallelism")
        count = 1 if parallelism is None else int(parallelism)
        return (spec.get("template") or {}).get("spec"), count
    if kind == "CronJob":
        return None, 0  # runs later, on its schedule
    if kind in _ONE_POD:
        template = spec if kind == "Pod" else (spec.get("template") or {}).get("spec")
        return template, 1
    return None, 0


def usage(objects: Iterable[dict[str, Any]]) -> dict[str, Decimal]:
    """What a set of objects takes from a namespace's quotas, by quota key."""
    total: defaultdict[str, Decimal] = defaultdict(Decimal)
    for obj in objects:
        kind = str(obj.get("kind"))
        if kind in _COUNTED:
            total[_COUNTED[kind]] += 1
        if kind == "PersistentVolumeClaim":
            storage = (((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}).get(
                "storage"
            )
            if storage is not None:
                total["requests.storage"] += parse_quantity(storage)
        template, pods = _pod_template(obj)
        if template is None or pods == 0:
            continue
        total["pods"] += pods
        for container in template.get("containers") or []:
            resources = container.get("resources") or {}
            for section in ("requests", "limits"):
                for name, amount in (resources.get(section) or {}).items():
                    if name in ("cpu", "memory", "ephemeral-storage"):
                        total[f"{section}.{name}"] += parse_quantity(amount) * pods
            # A container with limits only gets requests equal to them (Kubernetes defaulting).
            for name, amount in (resources.get("limits") or {}).items():
                if name in ("cpu", "memory") and name not in (resources.get("requests") or {}):
                    total[f"requests.{name}"] += parse_quantity(amount) * pods
    return dict(total)


def _show(key: str, amount: Decimal) -> str:
    if key.endswith("cpu"):
        return f"{amount * 1000:.0f}m" if amount != amount.to_integral_value() else f"{amount:.0f}"
    if key.endswith(("memory", "storage")):
        return f"{amount / 2**20:.0f}Mi"
    return f"{amount:.0f}"


def shortfalls(
    quotas: Iterable[dict[str, Any]],
    wanted: Iterable[dict[str, Any]],
    replaced: Iterable[dict[str, Any]] = (),
) -> list[str]:
    """Why the objects `wanted` would not fit the quotas (empty when they fit), counting only
    what they add over the objects `replaced`."""
    delta = usage(wanted)
    for key, amount in usage(replaced).items():
        delta[key] = delta.get(key, Decimal(0)) - amount
    problems = []
    for quota in quotas:
        name = (quota.get("metadata") or {}).get("name", "?")
        status = quota.get("status") or {}
        hard = status.get("hard") or (quota.get("spec") or {}).get("hard") or {}
        used = status.get("used") or {}
        for key, limit in sorted(hard.items()):
            asked = delta.get(_ALIASES.get(key, key), Decimal(0))
            if asked <= 0:
                continue
            have = parse_quantity(used.get(key, 0))
            cap = parse_quantity(limit)
            if have + asked > cap:
                problems.append(
                    f"quota {name}: {key} would be {_show(key, have + asked)} of "
                    f"{_show(key, cap)} ({_show(key, have)} used, {_show(key, asked)} more asked)"
                )
    return problems
