"""Workload controllers: Deployments, ReplicaSets, StatefulSets, DaemonSets and Jobs."""

# Rollouts are simplified: a template change replaces the old ReplicaSet's pods at once instead of
# surging, and StatefulSet/DaemonSet pods of an old revision are replaced at once too.

from __future__ import annotations

import copy
import hashlib
from typing import TYPE_CHECKING, Any

from tests.support.kube import kubelet
from tests.support.kube.api import random_suffix
from tests.support.kube.kubelet import PENDING, Health
from tests.support.kube.store import now

if TYPE_CHECKING:
    from tests.support.kube.controllers import Controllers

Obj = dict[str, Any]


def template_hash(template: Any) -> str:
    digest = hashlib.sha256(repr(template).encode()).digest()
    return "".join("bcdfghjklmnpqrstvwxz2456789"[b % 27] for b in digest[:10])


def owned_by(obj: Obj, uid: str) -> bool:
    return any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or [])


def owner_ref(owner: Obj, kind: str, api_version: str) -> Obj:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def replicasets(ctl: Controllers, rs: Obj, health: Health) -> list[Obj]:
    want = int(rs["spec"].get("replicas", 1))
    pods = ctl.pods_of(rs)
    for pod in pods[want:]:
        ctl.api.delete(ctl.rt("pods"), pod["metadata"]["namespace"], pod["metadata"]["name"], {})
    pods = pods[:want]
    template = rs["spec"].get("template") or {}
    prefix = rs["metadata"]["name"]
    for i in range(len(pods), want):
        pods.append(
            ctl.new_pod(
                rs,
                "ReplicaSet",
                f"{prefix}-{random_suffix()}",
                template,
                ctl.node_for(health, i),
            )
        )
    pods = ctl.sync_pods(pods, health, job=False)
    ready = sum(1 for p in pods if ctl.is_ready(p))
    status: Obj = {
        "replicas": len(pods),
        "fullyLabeledReplicas": len(pods),
        "observedGeneration": rs["metadata"].get("generation", 1),
    }
    if ready:
        status["readyReplicas"] = status["availableReplicas"] = ready
    ctl.set_status("replicasets", rs, status)
    return pods


def deployments(ctl: Controllers, deploy: Obj, health: Health) -> None:
    spec, meta = deploy["spec"], deploy["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    want = int(spec.get("replicas", 1))
    template = copy.deepcopy(spec.get("template") or {})
    pod_hash = template_hash(template)
    template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
    rs_name = f"{name}-{pod_hash}"
    owned = [
        copy.deepcopy(r)
        for r in ctl.api.store.items(ctl.rt("replicasets"), namespace)
        if owned_by(r, meta["uid"])
    ]
    revisions = [
        int((r["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", "0"))
        for r in owned
    ]
    current = next((r for r in owned if r["metadata"]["name"] == rs_name), None)
    for rs in owned:
        if rs is not current and rs["spec"].get("replicas", 0) != 0:
            ctl.event(
                kubelet.event(
                    deploy,
                    "ScalingReplicaSet",
                    f"Scaled down replica set {rs['metadata']['name']} from "
                    f"{rs['spec'].get('replicas')} to 0",
                    component="deployment-controller",
                )
            )
            rs["spec"]["replicas"] = 0
            ctl.put("replicasets", rs)
            replicasets(
                ctl, ctl.find("replicasets", namespace, rs["metadata"]["name"]) or rs, health
            )
    if current is None:
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
        rs_meta = {
            "name": rs_name,
            "namespace": namespace,
            "labels": dict(template["metadata"]["labels"]),
            "annotations": {
                "deployment.kubernetes.io/revision": str(max(revisions, default=0) + 1),
                "deployment.kubernetes.io/desired-replicas": str(want),
                "deployment.kubernetes.io/max-replicas": str(want + 1),
            },
            "ownerReferences": [owner_ref(deploy, "Deployment", "apps/v1")],
        }
        current = ctl.put(
            "replicasets",
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": rs_meta,
                "spec": {"replicas": want, "selector": selector, "template": template},
            },
        )
        ctl.event(
            kubelet.event(
                deploy,
                "ScalingReplicaSet",
                f"Scaled up replica set {rs_name} from 0 to {want}",
                component="deployment-controller",
            )
        )
    elif current["spec"].get("replicas") != want:
        was = current["spec"].get("replicas", 0)
        way = "up" if want > was else "down"
        ctl.event(
            kubelet.event(
                deploy,
                "ScalingReplicaSet",
                f"Scaled {way} replica set {rs_name} from {was} to {want}",
                component="deployment-controller",
            )
        )
        current["spec"]["replicas"] = want
        current["metadata"].setdefault("annotations", {})[
            "deployment.kubernetes.io/desired-replicas"
        ] = str(want)
        current = ctl.put("replicasets", current)
    pods = replicasets(ctl, current, health)
    ready = sum(1 for p in pods if ctl.is_ready(p))
    status: Obj = {
        "observedGeneration": meta.get("generation", 1),
        "replicas": len(pods),
        "updatedReplicas": len(pods),
    }
    if ready:
        status["readyReplicas"] = status["availableReplicas"] = ready
    if len(pods) - ready:
        status["unavailableReplicas"] = len(pods) - ready
    at = now()
    available = ready >= want
    progressing = {
        "type": "Progressing",
        "status": "True",
        "lastUpdateTime": at,
        "lastTransitionTime": at,
        "reason": "NewReplicaSetAvailable" if available else "ReplicaSetUpdated",
        "message": f'ReplicaSet "{rs_name}" has successfully progressed.'
        if available
        else f'ReplicaSet "{rs_name}" is progressing.',
    }
    if health.reason == "ProgressDeadlineExceeded":
        progressing.update(
            status="False",
            reason="ProgressDeadlineExceeded",
            message=health.message or f'ReplicaSet "{rs_name}" has timed out progressing.',
        )
    status["conditions"] = [
        {
            "type": "Available",
            "status": "True" if available else "False",
            "lastUpdateTime": at,
            "lastTransitionTime": at,
            "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
            "message": "Deployment has minimum availability."
            if available
            else "Deployment does not have minimum availability.",
        },
        progressing,
    ]
    ctl.set_status("deployments", deploy, status)


def statefulsets(ctl: Controllers, sts: Obj, health: Health) -> None:
    spec, meta = sts["spec"], sts["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    want = int(spec.get("replicas", 1))
    revision = f"{name}-{template_hash(spec.get('template'))}"
    for existing in ctl.pods_of(sts):
        pod_name = existing["metadata"]["name"]
        index = int(pod_name.rsplit("-", 1)[1])
        labels = existing["metadata"].get("labels") or {}
        stale = labels.get("controller-revision-hash") != revision
        if index >= want or stale:
            ctl.api.delete(ctl.rt("pods"), namespace, pod_name, {})
    current = []
    for i in range(want):
        pod_name = f"{name}-{i}"
        pod = ctl.find("pods", namespace, pod_name)
        if pod is None:
            template = copy.deepcopy(spec.get("template") or {})
            labels = template.setdefault("metadata", {}).setdefault("labels", {})
            labels.update(
                {
                    "apps.kubernetes.io/pod-index": str(i),
                    "controller-revision-hash": revision,
                    "statefulset.kubernetes.io/pod-name": pod_name,
                }
            )
            pod_spec = template.setdefault("spec", {})
            pod_spec.setdefault("hostname", pod_name)
            if spec.get("serviceName"):
                pod_spec.setdefault("subdomain", spec["serviceName"])
            for claim in spec.get("volumeClaimTemplates") or []:
                claim_name = f"{claim['metadata']['name']}-{pod_name}"
                _claim(ctl, sts, claim, claim_name, health)
                pod_spec.setdefault("volumes", []).append(
                    {
                        "name": claim["metadata"]["name"],
                        "persistentVolumeClaim": {"claimName": claim_name},
                    }
                )
            pod = ctl.new_pod(sts, "StatefulSet", pod_name, template, ctl.node_for(health, i))
        current.append(pod)
    current = ctl.sync_pods(current, health, job=False)
    ready = sum(1 for p in current if ctl.is_ready(p))
    status: Obj = {
        "observedGeneration": meta.get("generation", 1),
        "replicas": len(current),
        "currentReplicas": len(current),
        "updatedReplicas": len(current),
        "currentRevision": revision,
        "updateRevision": revision,
        "collisionCount": 0,
        "readyReplicas": ready,
        "availableReplicas": ready,
    }
    ctl.set_status("statefulsets", sts, status)


def _claim(ctl: Controllers, owner: Obj, template: Obj, name: str, health: Health) -> None:
    namespace = owner["metadata"]["namespace"]
    if ctl.find("persistentvolumeclaims", namespace, name) is not None:
        return
    labels = dict((owner["spec"].get("selector") or {}).get("matchLabels") or {})
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": copy.deepcopy(template.get("spec") or {}),
    }
    stored = ctl.put("persistentvolumeclaims", claim)
    ctl.reconcile_persistentvolumeclaims(stored, health)


def daemonsets(ctl: Controllers, ds: Obj, health: Health) -> None:
    spec, meta = ds["spec"], ds["metadata"]
    revision = template_hash(spec.get("template"))
    by_node = {p["spec"].get("nodeName"): p for p in ctl.pods_of(ds)}
    current = []
    for i, node in enumerate(ctl.nodes):
        pod = by_node.get(node)
        if (
            pod is not None
            and (pod["metadata"].get("labels") or {}).get("controller-revision-hash") != revision
        ):
            ctl.api.delete(ctl.rt("pods"), meta["namespace"], pod["metadata"]["name"], {})
            pod = None
        if pod is None:
            template = copy.deepcopy(spec.get("template") or {})
            template.setdefault("metadata", {}).setdefault("labels", {}).update(
                {
                    "controller-revision-hash": revision,
                    "pod-template-generation": str(meta.get("generation", 1)),
                }
            )
            pod = ctl.new_pod(
                ds,
                "DaemonSet",
                f"{meta['name']}-{random_suffix()}",
                template,
                ctl.node_for(health, i) and node,
            )
        current.append(pod)
    current = ctl.sync_pods(current, health, job=False)
    ready = sum(1 for p in current if ctl.is_ready(p))
    status: Obj = {
        "observedGeneration": meta.get("generation", 1),
        "desiredNumberScheduled": len(ctl.nodes),
        "currentNumberScheduled": len(current),
        "updatedNumberScheduled": len(current),
        "numberMisscheduled": 0,
        "numberReady": ready,
    }
    if ready:
        status["numberAvailable"] = ready
    if len(current) - ready:
        status["numberUnavailable"] = len(current) - ready
    ctl.set_status("daemonsets", ds, status)


def _job_condition(kind: str, reason: str, message: str, at: str) -> Obj:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": at,
        "lastTransitionTime": at,
    }


def jobs(ctl: Controllers, job: Obj, health: Health) -> None:
    spec, meta = job["spec"], job["metadata"]
    if (job.get("status") or {}).get("completionTime") or spec.get("suspend"):
        return
    pods = ctl.pods_of(job)
    want = int(spec.get("parallelism", 1))
    for i in range(len(pods), want):
        pods.append(
            ctl.new_pod(
                job,
                "Job",
                f"{meta['name']}-{random_suffix()}",
                spec.get("template") or {},
                ctl.node_for(health, i),
            )
        )
    failed = health.reason == "BackoffLimitExceeded"
    pods = ctl.sync_pods(pods, health if not failed else PENDING, job=True)
    at = now()
    status: Obj = {
        "startTime": (job.get("status") or {}).get("startTime") or at,
        "uncountedTerminatedPods": {},
    }
    if health.state == "ready":
        status.update(
            succeeded=int(spec.get("completions", 1)), ready=0, terminating=0, completionTime=at
        )
        done = "Reached expected number of succeeded pods"
        status["conditions"] = [
            _job_condition(kind, "CompletionsReached", done, at)
            for kind in ("SuccessCriteriaMet", "Complete")
        ]
        ctl.event(kubelet.event(job, "Completed", "Job completed", component="job-controller"))
    elif failed:
        message = health.message or "Job has reached the specified backoff limit"
        status.update(failed=int(spec.get("backoffLimit", 6)) + 1, ready=0, terminating=0)
        status["conditions"] = [
            _job_condition(kind, "BackoffLimitExceeded", message, at)
            for kind in ("FailureTarget", "Failed")
        ]
        ctl.event(
            kubelet.event(
                job, "BackoffLimitExceeded", message, kind="Warning", component="job-controller"
            )
        )
    else:
        status.update(
            active=len(pods), ready=sum(1 for p in pods if ctl.is_ready(p)), terminating=0
        )
    ctl.set_status("jobs", job, status)


HANDLERS = {
    "replicasets": replicasets,
    "deployments": deployments,
    "statefulsets": statefulsets,
    "daemonsets": daemonsets,
    "jobs": jobs,
}
