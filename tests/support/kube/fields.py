"""Unknown fields (fieldValidation Strict/Warn/Ignore) and CRD structural-schema checks."""

# Built-in kinds: the known keys of the object top level, ObjectMeta, and the workload/pod/
# container/service specs that charts write are checked; deeper structs (probes, affinity,
# security contexts...) are not. Custom resources: pruning and type/required/enum checks follow
# the CRD's openAPIV3Schema, including x-kubernetes-preserve-unknown-fields.

from __future__ import annotations

from typing import Any

from tests.support.kube.crds import check_custom
from tests.support.kube.resources import ResourceType
from tests.support.kube.status import bad_request

Obj = dict[str, Any]
Names = tuple[str, ...]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_META = _words(
    "name generateName namespace selfLink uid resourceVersion generation creationTimestamp "
    "deletionTimestamp deletionGracePeriodSeconds labels annotations ownerReferences "
    "finalizers managedFields"
)
_POD_SPEC = _words(
    "volumes initContainers containers ephemeralContainers restartPolicy "
    "terminationGracePeriodSeconds activeDeadlineSeconds dnsPolicy nodeSelector "
    "serviceAccountName serviceAccount automountServiceAccountToken nodeName hostNetwork "
    "hostPID hostIPC shareProcessNamespace securityContext imagePullSecrets hostname subdomain "
    "affinity schedulerName tolerations hostAliases priorityClassName priority dnsConfig "
    "readinessGates runtimeClassName enableServiceLinks preemptionPolicy overhead "
    "topologySpreadConstraints setHostnameAsFQDN os hostUsers schedulingGates resourceClaims "
    "resources"
)
_CONTAINER = _words(
    "name image command args workingDir ports envFrom env resources resizePolicy restartPolicy "
    "volumeMounts volumeDevices livenessProbe readinessProbe startupProbe lifecycle "
    "terminationMessagePath terminationMessagePolicy imagePullPolicy securityContext stdin "
    "stdinOnce tty"
)
_CONTAINER_PORT = _words("name hostPort containerPort protocol hostIP")
_ENV = _words("name value valueFrom")
_TEMPLATE = frozenset(("metadata", "spec"))
_WORKLOAD_SPECS = {
    "Deployment": "replicas selector template strategy minReadySeconds revisionHistoryLimit "
    "paused progressDeadlineSeconds",
    "StatefulSet": "replicas selector template volumeClaimTemplates serviceName "
    "podManagementPolicy updateStrategy revisionHistoryLimit minReadySeconds "
    "persistentVolumeClaimRetentionPolicy ordinals",
    "DaemonSet": "selector template updateStrategy minReadySeconds revisionHistoryLimit",
    "ReplicaSet": "replicas minReadySeconds selector template",
    "Job": "parallelism completions activeDeadlineSeconds podFailurePolicy successPolicy "
    "backoffLimit backoffLimitPerIndex maxFailedIndexes selector manualSelector template "
    "ttlSecondsAfterFinished completionMode suspend podReplacementPolicy managedBy",
}
_TOP = {
    "ConfigMap": "data binaryData immutable",
    "Secret": "data stringData type immutable",
    "ServiceAccount": "secrets imagePullSecrets automountServiceAccountToken",
    "Event": "involvedObject reason message source firstTimestamp lastTimestamp count type "
    "eventTime series action related reportingComponent reportingInstance",
    "Role": "rules",
    "ClusterRole": "rules aggregationRule",
    "RoleBinding": "subjects roleRef",
    "ClusterRoleBinding": "subjects roleRef",
}
_SERVICE_SPEC = _words(
    "ports selector clusterIP clusterIPs type externalIPs sessionAffinity loadBalancerIP "
    "loadBalancerSourceRanges externalName externalTrafficPolicy healthCheckNodePort "
    "publishNotReadyAddresses sessionAffinityConfig ipFamilies ipFamilyPolicy "
    "allocateLoadBalancerNodePorts loadBalancerClass internalTrafficPolicy "
    "trafficDistribution"
)
_SERVICE_PORT = _words("name protocol appProtocol port targetPort nodePort")
_PVC_SPEC = _words(
    "accessModes selector resources volumeName storageClassName volumeMode dataSource "
    "dataSourceRef volumeAttributesClassName"
)


def _pod_template(prefix: Names) -> dict[Names, frozenset[str]]:
    spec = (*prefix, "spec")
    return {
        prefix: _TEMPLATE,
        (*prefix, "metadata"): _META,
        spec: _POD_SPEC,
        (*spec, "containers"): _CONTAINER,
        (*spec, "initContainers"): _CONTAINER,
        (*spec, "containers", "ports"): _CONTAINER_PORT,
        (*spec, "initContainers", "ports"): _CONTAINER_PORT,
        (*spec, "containers", "env"): _ENV,
        (*spec, "initContainers", "env"): _ENV,
    }


def known_fields(kind: str) -> dict[Names, frozenset[str]]:
    """Field path (list indexes elided) -> the keys a struct there may have."""
    top = {"apiVersion", "kind", "metadata"}
    top |= _words(_TOP[kind]) if kind in _TOP else {"spec", "status"}
    table: dict[Names, frozenset[str]] = {(): frozenset(top), ("metadata",): _META}
    if kind in _WORKLOAD_SPECS:
        table[("spec",)] = _words(_WORKLOAD_SPECS[kind])
        table.update(_pod_template(("spec", "template")))
    elif kind == "Pod":
        table.update(_pod_template(()))
        del table[()]
        table[()] = frozenset(top)
    elif kind == "CronJob":
        table[("spec", "jobTemplate", "spec")] = _words(_WORKLOAD_SPECS["Job"])
        table.update(_pod_template(("spec", "jobTemplate", "spec", "template")))
    elif kind == "Service":
        table[("spec",)] = _SERVICE_SPEC
        table[("spec", "ports")] = _SERVICE_PORT
    elif kind == "PersistentVolumeClaim":
        table[("spec",)] = _PVC_SPEC
    return table


def prune_builtin(obj: Obj, kind: str) -> list[str]:
    """Drop unknown fields from `obj`; returns their paths as the server reports them."""
    table = known_fields(kind)
    found: list[str] = []

    def walk(node: Any, names: Names, shown: str) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, names, f"{shown}[{i}]")
            return
        if not isinstance(node, dict):
            return
        allowed = table.get(names)
        for key in list(node):
            here = f"{shown}.{key}" if shown else key
            if allowed is not None and key not in allowed:
                found.append(here)
                del node[key]
            elif (*names, key) in table or any(p[: len(names) + 1] == (*names, key) for p in table):
                walk(node[key], (*names, key), here)

    walk(obj, (), "")
    return found


# ------------------------------------------------------------------- CRD structural schema


def unknown_fields(
    rt: ResourceType, obj: Obj, validation: str, warnings: list[str], *, apply: bool
) -> list[tuple[str, str, str]]:
    """Prune unknown fields from `obj` as fieldValidation says (Strict: 400; Warn: a warning
    each; Ignore: silently); returns a custom resource's schema violations (422 causes)."""
    causes: list[tuple[str, str, str]] = []
    if rt.builtin:
        pruned = prune_builtin(obj, rt.kind)
    else:
        pruned, causes = check_custom(obj, rt)
    if pruned and validation == "Strict":
        if apply:
            raise bad_request("; ".join(f".{p}: field not declared in schema" for p in pruned))
        raise bad_request(
            "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in pruned)
        )
    if pruned and validation == "Warn":
        warnings.extend(f'unknown field "{p}"' for p in pruned)
    return causes
