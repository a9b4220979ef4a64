"""In-cluster controllers: scheduling, pods reported by a node, claims, load balancers."""

# Controllers run a short delay after the write that triggered them (as real ones do), so an
# apply's response still shows the old status; `FakeKube.settle()` waits for them. A workload's
# health (pending / ready / failing) is set per generation by the test hooks, or ready by default
# in auto-ready mode.

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

from tests.support.kube import kubelet, workloads
from tests.support.kube.api import Api
from tests.support.kube.kubelet import PENDING, READY, Health
from tests.support.kube.resources import ResourceType
from tests.support.kube.selectors import selector_matches
from tests.support.kube.workloads import owned_by, owner_ref

Obj = dict[str, Any]
Key = tuple[str, str, str]  # (plural, namespace, name)
CONTROLLER = "kube-controller-manager"
log = logging.getLogger(__name__)
_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
    "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
    "guaranteed across distributions of Kubernetes clusters."
)

WORKLOADS = ("deployments", "statefulsets", "daemonsets", "replicasets", "jobs")
_APPS = {
    "deployments": "Deployment",
    "statefulsets": "StatefulSet",
    "daemonsets": "DaemonSet",
    "replicasets": "ReplicaSet",
    "jobs": "Job",
}


def _without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_times(v)
            for k, v in value.items()
            if not (k.endswith("Time") or k in ("startedAt", "finishedAt", "lastProbeTime"))
        }
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


class Controllers:
    def __init__(
        self,
        api: Api,
        *,
        delay: float,
        namespace_delay: float,
        nodes: list[str],
        auto_ready: bool,
        ready_after: float = 0.0,
    ) -> None:
        self.api = api
        self.delay = delay
        self.namespace_delay = namespace_delay
        self.nodes = nodes
        self.auto_ready = auto_ready
        # Auto-ready workloads become ready this many seconds after a generation is first
        # seen (a rollout that takes a while); pending until then.
        self.ready_after = ready_after
        self._first_seen: dict[tuple[Key, int], float] = {}
        self._due: set[tuple[Key, int]] = set()
        # Not counted by busy(): settle() returns while a rollout is still under way.
        self._rollouts: set[asyncio.TimerHandle] = set()
        self.health: dict[Key, Health] = {}
        self.errors: list[BaseException] = []
        self._pending: set[Key] = set()
        self._later: set[asyncio.TimerHandle] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._internal = False
        self._evented: set[tuple[str, str, str]] = set()
        self._next_ip = 10
        self.ca_bundle = ""
        api.listeners.append(self._on_change)
        api.defer = self._defer

    def rt(self, plural: str) -> ResourceType:
        return self.api.registry.find(plural)

    # ------------------------------------------------------------------------ scheduling

    def _on_change(self, rt: ResourceType, old: Obj | None, new: Obj | None) -> None:
        if self._internal or not rt.builtin:
            return
        obj = new or old
        assert obj is not None
        meta = obj["metadata"]
        if rt.plural in ("pods", "replicasets"):
            # Found now: once a pod is deleted, only this copy still names its owner.
            self.enqueue(self.top_owner(rt.plural, obj))
        elif rt.plural in (*WORKLOADS, "persistentvolumeclaims", "services", "ingresses"):
            self.enqueue((rt.plural, meta.get("namespace", ""), meta["name"]))
        elif rt.plural == "namespaces" and old is None:
            self.enqueue((rt.plural, "", meta["name"]))

    def enqueue(self, key: Key) -> None:
        self._pending.add(key)
        self._arm()

    def _defer(self, fn: Any) -> None:
        # Namespace termination: a real namespace stays Terminating for a while, long enough
        # for `kubectl delete -f` to delete the rest of a manifest it comes first in.
        def run() -> None:
            self._later.discard(handle)
            self._run(fn)

        handle = asyncio.get_running_loop().call_later(self.namespace_delay, run)
        self._later.add(handle)

    def _rolled_out(self, handle: asyncio.TimerHandle, key: Key) -> None:
        self._rollouts.discard(handle)
        self._run(lambda: self.reconcile(key))

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self._flush)

    def _flush(self) -> None:
        self._timer = None
        keys, self._pending = sorted(self._pending), set()
        for key in keys:
            self._run(lambda key=key: self.reconcile(key))

    def _run(self, fn: Any) -> None:
        self._internal = True
        try:
            fn()
        except Exception as exc:  # surfaced by FakeKube.stop(): a broken fake must fail tests
            log.exception("fake controller failed")
            self.errors.append(exc)
        finally:
            self._internal = False

    def busy(self) -> bool:
        return self._timer is not None or bool(self._pending or self._later)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for handle in self._later | self._rollouts:
            handle.cancel()
        self._later.clear()
        self._rollouts.clear()

    # --------------------------------------------------------------------------- helpers

    def find(self, plural: str, namespace: str, name: str) -> Obj | None:
        found = self.api.store.find(self.rt(plural), namespace, name)
        return copy.deepcopy(found) if found is not None else None

    def put(self, plural: str, obj: Obj, *, manager: str = CONTROLLER, sub: str = "") -> Obj:
        return self.api.put_internal(self.rt(plural), obj, manager=manager, subresource=sub)

    def set_status(self, plural: str, obj: Obj, status: Obj, manager: str = CONTROLLER) -> None:
        if _without_times(obj.get("status")) == _without_times(status):
            return
        obj["status"] = status
        self.put(plural, obj, manager=manager, sub="status")

    def event(self, ev: Obj) -> None:
        ref = ev["involvedObject"]
        key = (str(ref.get("uid")), ev["reason"], ev["message"])
        if key in self._evented:
            return
        self._evented.add(key)
        self.put("events", ev, manager=ev["source"]["component"])

    def _health(self, key: Key, generation: int) -> Health:
        set_for = self.health.get(key)
        if set_for is not None and set_for.generation == generation:
            return set_for
        if not self.auto_ready:
            return PENDING
        if self.ready_after <= 0:
            return READY
        loop = asyncio.get_running_loop()
        seen = self._first_seen.setdefault((key, generation), loop.time())
        left = seen + self.ready_after - loop.time()
        if left <= 0:
            return READY
        if (key, generation) not in self._due:
            # Reconciled again once the rollout is due (a timer like the namespace one).
            self._due.add((key, generation))
            handle = asyncio.get_running_loop().call_later(
                left, lambda: self._rolled_out(handle, key)
            )
            self._rollouts.add(handle)
        return PENDING

    def top_owner(self, plural: str, obj: Obj) -> Key:
        """The workload whose health a pod (or ReplicaSet) follows: up its controller refs."""
        meta = obj["metadata"]
        namespace = meta.get("namespace", "")
        key: Key = (plural, namespace, meta["name"])
        current: Obj | None = obj
        while current is not None:
            refs = current["metadata"].get("ownerReferences") or []
            ref = next((r for r in refs if r.get("controller")), None)
            owner = next((p for p, k in _APPS.items() if ref and ref.get("kind") == k), None)
            if ref is None or owner is None:
                return key
            key = (owner, namespace, str(ref["name"]))
            current = self.find(owner, namespace, key[2])
        return key

    # -------------------------------------------------------------------------- reconcile

    def reconcile(self, key: Key) -> None:
        plural, namespace, name = key
        if plural == "pods":
            pod = self.find("pods", namespace, name)
            owner = self.top_owner("pods", pod) if pod else None
            if owner and owner[0] != "pods":
                return self.reconcile(owner)
            if pod is not None and not pod["metadata"].get("deletionTimestamp"):
                self.sync_pods([pod], self._health(key, 0), job=False)
            return None
        if plural == "replicasets":
            rs = self.find(plural, namespace, name)
            owner = self.top_owner("replicasets", rs) if rs else None
            if owner and owner[0] == "deployments":
                return self.reconcile(owner)
        obj = self.find(plural, namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return None
        health = self._health(key, int(obj["metadata"].get("generation", 0)))
        if plural in workloads.HANDLERS:
            workloads.HANDLERS[plural](self, obj, health)
        else:
            getattr(self, f"reconcile_{plural}")(obj, health)
        return None

    def new_pod(self, owner: Obj, kind: str, name: str, template: Obj, node: str | None) -> Obj:
        meta = copy.deepcopy(template.get("metadata") or {})
        meta.update({"name": name, "namespace": owner["metadata"]["namespace"]})
        api_version = "batch/v1" if kind == "Job" else "apps/v1"
        meta["ownerReferences"] = [owner_ref(owner, kind, api_version)]
        spec = copy.deepcopy(template.get("spec") or {})
        if node:
            spec["nodeName"] = node
        pod = self.put("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
        if node:
            self.event(
                kubelet.event(
                    pod,
                    "Scheduled",
                    f"Successfully assigned {meta['namespace']}/{name} to {node}",
                    component="default-scheduler",
                )
            )
        self.event(
            kubelet.event(
                owner,
                "SuccessfulCreate",
                f"Created pod: {name}",
                component=f"{kind.lower()}-controller",
            )
        )
        return pod

    def sync_pods(self, pods: list[Obj], health: Health, *, job: bool) -> list[Obj]:
        """Have the node report `health` for each pod; returns them as stored."""
        out = []
        for pod in pods:
            node = pod["spec"].get("nodeName") or ""
            self._next_ip += 1
            ip = pod.get("status", {}).get("podIP") or f"10.244.0.{self._next_ip % 250 + 2}"
            status = kubelet.pod_status(pod, health, pod_ip=ip, host_ip="172.18.0.2", job=job)
            if health.reason == "Unschedulable":
                status.pop("hostIP", None)
            self.set_status("pods", pod, status, manager="kubelet")
            stored = self.find("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
            if stored is not None:
                if health.state == "failing":
                    for ev in kubelet.failure_events(stored, health, node):
                        self.event(ev)
                out.append(stored)
        return out

    def pods_of(self, owner: Obj) -> list[Obj]:
        uid = owner["metadata"]["uid"]
        pods = self.api.store.items(self.rt("pods"), owner["metadata"]["namespace"])
        return [copy.deepcopy(p) for p in pods if owned_by(p, uid)]

    def node_for(self, health: Health, index: int = 0) -> str | None:
        if health.reason == "Unschedulable" or not self.nodes:
            return None
        return self.nodes[index % len(self.nodes)]

    @staticmethod
    def is_ready(pod: Obj) -> bool:
        return any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (pod.get("status") or {}).get("conditions") or []
        )

    # ---------------------------------------------------------------------- other kinds

    def reconcile_persistentvolumeclaims(self, pvc: Obj, health: Health) -> None:
        if health.state == "failing":
            self.event(
                kubelet.event(
                    pvc,
                    "ProvisioningFailed",
                    health.message or 'storageclass.storage.k8s.io "standard" not found',
                    kind="Warning",
                    component="persistentvolume-controller",
                )
            )
            return
        if health.state != "ready" or (pvc.get("status") or {}).get("phase") == "Bound":
            return
        pvc["spec"]["volumeName"] = f"pvc-{pvc['metadata']['uid']}"
        pvc["metadata"].setdefault("annotations", {}).update(
            {
                "pv.kubernetes.io/bind-completed": "yes",
                "pv.kubernetes.io/bound-by-controller": "yes",
            }
        )
        pvc = self.put("persistentvolumeclaims", pvc, manager="kube-controller-manager")
        storage = ((pvc["spec"].get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        status = {
            "phase": "Bound",
            "accessModes": pvc["spec"].get("accessModes", []),
            "capacity": {"storage": storage},
        }
        self.set_status("persistentvolumeclaims", pvc, status)

    def reconcile_services(self, svc: Obj, health: Health) -> None:
        if (svc.get("spec") or {}).get("type") != "LoadBalancer" or health.state != "ready":
            return
        self.set_status(
            "services",
            svc,
            {"loadBalancer": {"ingress": [{"ip": "172.18.255.200", "ipMode": "VIP"}]}},
        )

    def reconcile_ingresses(self, ing: Obj, health: Health) -> None:
        if health.state == "ready":
            self.set_status(
                "ingresses", ing, {"loadBalancer": {"ingress": [{"ip": "172.18.255.201"}]}}
            )

    def reconcile_namespaces(self, ns: Obj, health: Health) -> None:
        """What every namespace gets: the `default` ServiceAccount and the root CA bundle."""
        name = ns["metadata"]["name"]
        if self.find("serviceaccounts", name, "default") is None:
            account = {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": name},
            }
            self.put("serviceaccounts", account)
        if self.find("configmaps", name, "kube-root-ca.crt") is None:
            bundle = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "kube-root-ca.crt",
                    "namespace": name,
                    "annotations": {"kubernetes.io/description": _CA_DESCRIPTION},
                },
                "data": {"ca.crt": self.ca_bundle},
            }
            self.put("configmaps", bundle)

    def pods_matching(self, namespace: str, selector: Obj) -> list[Obj]:
        pods = self.api.store.items(self.rt("pods"), namespace)
        return [p for p in pods if selector_matches(selector, p["metadata"].get("labels") or {})]
