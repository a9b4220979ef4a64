"""API versions Kubernetes stopped serving, so a chart still using one gets told so.

From the Kubernetes deprecated API migration guide
(https://kubernetes.io/docs/reference/using-api/deprecation-guide/). A kind missing from a
cluster is usually a CRD that is not installed, but for these built-in kinds it is the
cluster's version: the chart predates the removal.
"""

from __future__ import annotations

from typing import Final, NamedTuple


class Removal(NamedTuple):
    release: str  # the Kubernetes minor release that stopped serving it
    replacement: str  # what to use instead ("" when the kind is gone altogether)


# (apiVersion, kind) -> the removal.
REMOVED: Final[dict[tuple[str, str], Removal]] = {
    # 1.16
    **{
        (group, kind): Removal("1.16", "apps/v1")
        for group in ("extensions/v1beta1", "apps/v1beta1", "apps/v1beta2")
        for kind in ("Deployment", "DaemonSet", "ReplicaSet", "StatefulSet")
        if not (group == "extensions/v1beta1" and kind == "StatefulSet")
    },
    ("extensions/v1beta1", "NetworkPolicy"): Removal("1.16", "networking.k8s.io/v1"),
    ("extensions/v1beta1", "PodSecurityPolicy"): Removal("1.16", ""),
    # 1.22
    ("extensions/v1beta1", "Ingress"): Removal("1.22", "networking.k8s.io/v1"),
    ("networking.k8s.io/v1beta1", "Ingress"): Removal("1.22", "networking.k8s.io/v1"),
    ("networking.k8s.io/v1beta1", "IngressClass"): Removal("1.22", "networking.k8s.io/v1"),
    **{
        ("admissionregistration.k8s.io/v1beta1", kind): Removal(
            "1.22", "admissionregistration.k8s.io/v1"
        )
        for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
    },
    ("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition"): Removal(
        "1.22", "apiextensions.k8s.io/v1"
    ),
    ("apiregistration.k8s.io/v1beta1", "APIService"): Removal("1.22", "apiregistration.k8s.io/v1"),
    ("certificates.k8s.io/v1beta1", "CertificateSigningRequest"): Removal(
        "1.22", "certificates.k8s.io/v1"
    ),
    ("coordination.k8s.io/v1beta1", "Lease"): Removal("1.22", "coordination.k8s.io/v1"),
    **{
        (f"rbac.authorization.k8s.io/{version}", kind): Removal(
            "1.22", "rbac.authorization.k8s.io/v1"
        )
        for version in ("v1alpha1", "v1beta1")
        for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    },
    ("scheduling.k8s.io/v1beta1", "PriorityClass"): Removal("1.22", "scheduling.k8s.io/v1"),
    **{
        ("storage.k8s.io/v1beta1", kind): Removal("1.22", "storage.k8s.io/v1")
        for kind in ("CSIDriver", "CSINode", "StorageClass", "VolumeAttachment")
    },
    # 1.25
    ("batch/v1beta1", "CronJob"): Removal("1.25", "batch/v1"),
    ("discovery.k8s.io/v1beta1", "EndpointSlice"): Removal("1.25", "discovery.k8s.io/v1"),
    ("events.k8s.io/v1beta1", "Event"): Removal("1.25", "events.k8s.io/v1"),
    ("autoscaling/v2beta1", "HorizontalPodAutoscaler"): Removal("1.25", "autoscaling/v2"),
    ("policy/v1beta1", "PodDisruptionBudget"): Removal("1.25", "policy/v1"),
    ("policy/v1beta1", "PodSecurityPolicy"): Removal("1.25", ""),
    ("node.k8s.io/v1beta1", "RuntimeClass"): Removal("1.25", "node.k8s.io/v1"),
    # 1.26, 1.27, 1.29, 1.32
    ("autoscaling/v2beta2", "HorizontalPodAutoscaler"): Removal("1.26", "autoscaling/v2"),
    **{
        ("flowcontrol.apiserver.k8s.io/v1beta1", kind): Removal(
            "1.26", "flowcontrol.apiserver.k8s.io/v1"
        )
        for kind in ("FlowSchema", "PriorityLevelConfiguration")
    },
    ("storage.k8s.io/v1beta1", "CSIStorageCapacity"): Removal("1.27", "storage.k8s.io/v1"),
    **{
        ("flowcontrol.apiserver.k8s.io/v1beta2", kind): Removal(
            "1.29", "flowcontrol.apiserver.k8s.io/v1"
        )
        for kind in ("FlowSchema", "PriorityLevelConfiguration")
    },
    **{
        ("flowcontrol.apiserver.k8s.io/v1beta3", kind): Removal(
            "1.32", "flowcontrol.apiserver.k8s.io/v1"
        )
        for kind in ("FlowSchema", "PriorityLevelConfiguration")
    },
}


def not_served(api_version: str, kind: str) -> str:
    """Why the cluster does not serve `kind` in `api_version`, for the person who deploys."""
    removal = REMOVED.get((api_version, kind))
    if removal is None:
        return f"the cluster does not serve {kind} ({api_version}); is its CRD installed?"
    text = (
        f"`{api_version} {kind}` is not served by this cluster "
        f"(removed in Kubernetes {removal.release})"
    )
    if removal.replacement:
        text += f"; the chart must use {removal.replacement} {kind}"
    elif kind == "PodSecurityPolicy":
        text += "; Pod Security Admission replaces it, so the chart must drop it"
    return text
