"""Is a Kubernetes object ready, still coming up, or failed, and why: read from its status.

Pure functions over object dicts (as the API returns them), so the rules are testable on their
own and the same for polling and watching.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Waiting reasons that will not fix themselves: waiting longer only delays the bad news.
FATAL_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
WORKLOADS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"})
TRACKED = WORKLOADS | {"Job", "Service", "PersistentVolumeClaim"}


@dataclass(frozen=True)
class Readiness:
    ready: bool
    summary: str  # "deployment/web 2/3 ready"
    failed: str | None = None  # the reason, when it cannot become ready


def ref(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind', '?').lower()}/{obj.get('metadata', {}).get('name', '?')}"


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) else default


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == kind:
            return cond
    return None


def _rollout(obj: dict[str, Any]) -> tuple[bool, str]:
    kind = obj.get("kind")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    generation = _int(obj.get("metadata", {}).get("generation"), 0)
    observed = _int(status.get("observedGeneration"), 0)
    current = observed >= generation
    if kind == "DaemonSet":
        want = _int(status.get("desiredNumberScheduled"))
        have = _int(status.get("numberReady"))
        updated = _int(status.get("updatedNumberScheduled"), have)
        return current and have >= want and updated >= want and observed > 0, f"{have}/{want}"
    want = _int(spec.get("replicas"), 1)
    have = _int(status.get("readyReplicas"))
    if kind == "Deployment":
        available = _int(status.get("availableReplicas"))
        updated = _int(status.get("updatedReplicas"))
        total = _int(status.get("replicas"))
        progressing = _condition(status, "Progressing")
        if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
            return False, f"{have}/{want}"
        ok = current and updated >= want and available >= want and total <= want
        return ok, f"{have}/{want}"
    updated = _int(status.get("updatedReplicas"), have)
    return current and have >= want and updated >= want, f"{have}/{want}"


def assess(obj: dict[str, Any]) -> Readiness:
    """Readiness of one object from its own status."""
    kind = obj.get("kind")
    status = obj.get("status") or {}
    name = ref(obj)
    if kind in WORKLOADS:
        ok, counts = _rollout(obj)
        progressing = _condition(status, "Progressing")
        if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
            return Readiness(False, f"{name} {counts} ready", str(progressing.get("message")))
        return Readiness(ok, f"{name} {counts} ready")
    if kind == "Job":
        failed = _condition(status, "Failed")
        if failed and failed.get("status") == "True":
            return Readiness(False, f"{name} failed", str(failed.get("message") or "job failed"))
        want = _int((obj.get("spec") or {}).get("completions"), 1)
        done = _int(status.get("succeeded"))
        complete = _condition(status, "Complete")
        ok = done >= want or bool(complete and complete.get("status") == "True")
        return Readiness(ok, f"{name} {done}/{want} complete")
    if kind == "PersistentVolumeClaim":
        phase = status.get("phase") or "Pending"
        if phase == "Lost":
            return Readiness(False, f"{name} {phase}", "the claim lost its volume")
        return Readiness(phase == "Bound", f"{name} {phase.lower()}")
    if kind == "Service":
        spec = obj.get("spec") or {}
        if spec.get("type") == "LoadBalancer":
            ingress = (status.get("loadBalancer") or {}).get("ingress") or []
            return Readiness(bool(ingress), f"{name} {'has' if ingress else 'awaits'} an address")
        return Readiness(True, f"{name} ready")
    return Readiness(True, f"{name} applied")


def pod_problem(pod: dict[str, Any]) -> tuple[str, bool] | None:
    """(reason, fatal) of a pod that is not coming up: a container stuck on an image or a
    crash loop (fatal), or a pod the scheduler cannot place (not fatal: capacity may come)."""
    status = pod.get("status") or {}
    for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in FATAL_WAITING:
            message = waiting.get("message") or ""
            return f"container {cs.get('name')}: {reason} {message}".strip(), True
    scheduled = _condition(status, "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        return f"pod unschedulable: {scheduled.get('message') or scheduled.get('reason')}", False
    return None


def selector_of(obj: dict[str, Any]) -> str | None:
    """The label selector of a workload's pods, as a query string."""
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not labels:
        return None
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
