"""Pod statuses and Events as the kubelet and scheduler write them, per simulated health."""

# A workload's health is one of: coming up (pending), ready, or failing for a reason. The shapes
# (phase, conditions, containerStatuses waiting/running/terminated, Event reasons and messages)
# copy what a real node reports for each case.

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from tests.support.kube.store import now

Obj = dict[str, Any]

IMAGE_REASONS = ("ImagePullBackOff", "ErrImagePull")
POD_REASONS = (*IMAGE_REASONS, "CrashLoopBackOff", "Unschedulable")
FAILING_REASONS = (*POD_REASONS, "ProgressDeadlineExceeded", "BackoffLimitExceeded")


@dataclass(frozen=True)
class Health:
    state: str  # pending | ready | failing
    reason: str = ""
    message: str = ""
    generation: int = 0  # the workload generation it was set for (kept across status writes)


PENDING = Health("pending")
READY = Health("ready")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _condition(kind: str, ok: bool, at: str, reason: str = "", message: str = "") -> Obj:
    cond: Obj = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None}
    cond["lastTransitionTime"] = at
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _image_ref(image: str) -> str:
    return image if "/" in image.split(":")[0] else f"docker.io/library/{image}"


def _not_found(image: str) -> str:
    ref = _image_ref(image)
    return (
        f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": '
        f"{ref}: not found"
    )


def pod_status(pod: Obj, health: Health, *, pod_ip: str, host_ip: str, job: bool) -> Obj:
    """The status a node reports for `pod` in the given health."""
    at = now()
    spec = pod.get("spec") or {}
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    names = [str(c.get("name")) for c in containers]
    reason = health.reason if health.state == "failing" else ""
    if reason == "Unschedulable":
        message = health.message or (
            "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
            "1 No preemption victims found for incoming pod."
        )
        return {
            "phase": "Pending",
            "conditions": [_condition("PodScheduled", False, at, "Unschedulable", message)],
            "qosClass": "BestEffort",
        }
    ready = health.state == "ready"
    done = ready and job
    statuses = []
    for c in containers:
        image = str(c.get("image", ""))
        cs: Obj = {"name": c.get("name"), "image": image, "imageID": "", "restartCount": 0}
        cs["ready"], cs["started"], cs["lastState"] = ready and not done, ready and not done, {}
        if done:
            cs["imageID"] = f"{_image_ref(image)}@sha256:{_digest(image)}"
            cs["containerID"] = f"containerd://{_digest(pod['metadata']['name'] + image)}"
            cs["state"] = {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": at,
                    "finishedAt": at,
                }
            }
        elif ready:
            cs["imageID"] = f"{_image_ref(image)}@sha256:{_digest(image)}"
            cs["containerID"] = f"containerd://{_digest(pod['metadata']['name'] + image)}"
            cs["state"] = {"running": {"startedAt": at}}
        elif reason in IMAGE_REASONS:
            text = (
                f'Back-off pulling image "{image}"'
                if reason == "ImagePullBackOff"
                else f'failed to pull and unpack image "{_image_ref(image)}": failed to resolve '
                f'reference "{_image_ref(image)}": {_image_ref(image)}: not found'
            )
            cs["state"] = {"waiting": {"reason": reason, "message": health.message or text}}
        elif reason == "CrashLoopBackOff":
            cs["restartCount"] = 4
            cs["containerID"] = f"containerd://{_digest(pod['metadata']['name'] + image)}"
            cs["imageID"] = f"{_image_ref(image)}@sha256:{_digest(image)}"
            meta = pod["metadata"]
            text = (
                f"back-off 1m20s restarting failed container={c.get('name')} "
                f"pod={meta['name']}_{meta.get('namespace')}({meta.get('uid')})"
            )
            cs["state"] = {"waiting": {"reason": reason, "message": health.message or text}}
            cs["lastState"] = {
                "terminated": {"exitCode": 1, "reason": "Error", "startedAt": at, "finishedAt": at}
            }
        else:
            cs["state"] = {"waiting": {"reason": "ContainerCreating"}}
        statuses.append(cs)
    unready = f"containers with unready status: [{' '.join(names)}]"
    if done:
        phase = "Succeeded"
        conditions = [
            _condition("PodReadyToStartContainers", False, at),
            _condition("Initialized", True, at, "PodCompleted"),
            _condition("Ready", False, at, "PodCompleted"),
            _condition("ContainersReady", False, at, "PodCompleted"),
            _condition("PodScheduled", True, at),
        ]
    else:
        phase = "Running" if ready or reason == "CrashLoopBackOff" else "Pending"
        conditions = [
            _condition("PodReadyToStartContainers", ready or bool(reason), at),
            _condition("Initialized", True, at),
            _condition(
                "Ready", ready, at, "" if ready else "ContainersNotReady", "" if ready else unready
            ),
            _condition(
                "ContainersReady",
                ready,
                at,
                "" if ready else "ContainersNotReady",
                "" if ready else unready,
            ),
            _condition("PodScheduled", True, at),
        ]
    out: Obj = {"phase": phase, "conditions": conditions, "hostIP": host_ip}
    out["hostIPs"] = [{"ip": host_ip}]
    if phase != "Pending":
        out["podIP"], out["podIPs"] = pod_ip, [{"ip": pod_ip}]
    out["startTime"] = at
    out["containerStatuses"] = statuses
    out["qosClass"] = "BestEffort"
    return out


def event(
    involved: Obj,
    reason: str,
    message: str,
    *,
    kind: str = "Normal",
    component: str = "kubelet",
    host: str = "",
    field_path: str = "",
) -> Obj:
    """A core/v1 Event about `involved` (an object as stored)."""
    meta = involved["metadata"]
    at = now()
    ref: Obj = {
        "kind": involved.get("kind"),
        "namespace": meta.get("namespace", "default"),
        "name": meta["name"],
        "uid": meta.get("uid"),
        "apiVersion": involved.get("apiVersion"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    if field_path:
        ref["fieldPath"] = field_path
    source: Obj = {"component": component}
    if host:
        source["host"] = host
    suffix = _digest(f"{meta.get('uid')}{reason}{message}")[:16]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{suffix}", "namespace": ref["namespace"]},
        "involvedObject": ref,
        "reason": reason,
        "message": message,
        "source": source,
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
        "type": kind,
        "eventTime": None,
        "reportingComponent": component,
        "reportingInstance": host,
    }


def failure_events(pod: Obj, health: Health, host: str) -> list[Obj]:
    """The Warning events a node or the scheduler records for a failing pod."""
    reason = health.reason
    out = []
    if reason == "Unschedulable":
        message = (pod.get("status") or {}).get("conditions", [{}])[0].get("message", "")
        return [
            event(pod, "FailedScheduling", message, kind="Warning", component="default-scheduler")
        ]
    for c in (pod.get("spec") or {}).get("containers") or []:
        image = str(c.get("image", ""))
        where = f"spec.containers{{{c.get('name')}}}"
        if reason in IMAGE_REASONS:
            pull = f'Failed to pull image "{image}": {_not_found(image)}'
            out.append(
                event(
                    pod,
                    "Failed",
                    health.message or pull,
                    kind="Warning",
                    host=host,
                    field_path=where,
                )
            )
            out.append(
                event(
                    pod,
                    "Failed",
                    "Error: ErrImagePull",
                    kind="Warning",
                    host=host,
                    field_path=where,
                )
            )
            if reason == "ImagePullBackOff":
                out.append(
                    event(
                        pod,
                        "BackOff",
                        f'Back-off pulling image "{image}"',
                        kind="Warning",
                        host=host,
                        field_path=where,
                    )
                )
                out.append(
                    event(
                        pod,
                        "Failed",
                        "Error: ImagePullBackOff",
                        kind="Warning",
                        host=host,
                        field_path=where,
                    )
                )
        elif reason == "CrashLoopBackOff":
            out.append(
                event(
                    pod,
                    "BackOff",
                    health.message
                    or "Back-off restarting failed container "
                    f"{c.get('name')} in pod {pod['metadata']['name']}",
                    kind="Warning",
                    host=host,
                    field_path=where,
                )
            )
    return out
