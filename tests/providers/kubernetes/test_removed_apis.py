"""A release using an API Kubernetes removed is told so; an unknown kind keeps the CRD hint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from openpitrix.netguard import AddressPolicy
from openpitrix.providers.base import ClusterState, Credential, ProviderError, Release, TaskRun
from openpitrix.providers.kubernetes.provider import KubernetesProvider
from openpitrix.providers.kubernetes.removed import REMOVED, not_served
from tests.support.deployments import kubeconfig
from tests.support.kube import FakeKube


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    async with FakeKube() as fake:
        yield fake


@pytest.fixture
async def provider() -> AsyncIterator[KubernetesProvider]:
    made = KubernetesProvider()
    try:
        yield made
    finally:
        await made.close()


async def apply(
    provider: KubernetesProvider, kube: FakeKube, objects: list[dict[str, Any]]
) -> dict[str, Any]:
    async def no_chart() -> bytes:
        raise AssertionError("apply fetches no chart")

    async def report(message: str, percent: int | None, data: dict[str, Any]) -> None:
        return None

    return await provider.run_task(
        TaskRun(
            action="apply",
            params={},
            cluster_id="cl-removed",
            zone="default",
            credential=Credential("kubernetes", kube.url, kubeconfig(kube)),
            release=Release(revision=1, version_id="appv-x", values={}, manifest=objects),
            previous=None,
            history=(),
            state=ClusterState(),
            fetch_package=no_chart,
            report=report,
            timeout_seconds=30.0,
            policy=AddressPolicy(allow_private=True),
        )
    )


def manifest(api_version: str, kind: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, **spec}


PSP = manifest(
    "policy/v1beta1",
    "PodSecurityPolicy",
    "restricted",
    spec={"privileged": False, "seLinux": {"rule": "RunAsAny"}},
)
OLD_DEPLOYMENT = manifest(
    "extensions/v1beta1",
    "Deployment",
    "web",
    spec={"template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
)
OLD_ROLE = manifest("rbac.authorization.k8s.io/v1beta1", "Role", "reader", rules=[])


async def test_a_pod_security_policy_is_named_as_removed_in_1_25(
    kube: FakeKube, provider: KubernetesProvider
) -> None:
    with pytest.raises(ProviderError) as info:
        await apply(provider, kube, [PSP])

    assert info.value.code == "apply_failed"
    assert info.value.message.startswith(
        "`policy/v1beta1 PodSecurityPolicy` is not served by this cluster "
        "(removed in Kubernetes 1.25)"
    )
    assert "CRD" not in info.value.message


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            OLD_DEPLOYMENT,
            "`extensions/v1beta1 Deployment` is not served by this cluster (removed in "
            "Kubernetes 1.16); the chart must use apps/v1 Deployment",
        ),
        (
            OLD_ROLE,
            "`rbac.authorization.k8s.io/v1beta1 Role` is not served by this cluster (removed "
            "in Kubernetes 1.22); the chart must use rbac.authorization.k8s.io/v1 Role",
        ),
    ],
)
async def test_removed_workload_and_rbac_apis_name_their_replacement(
    kube: FakeKube, provider: KubernetesProvider, obj: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ProviderError) as info:
        await apply(provider, kube, [obj])

    assert info.value.message == expected


async def test_an_unknown_kind_keeps_the_crd_hint(
    kube: FakeKube, provider: KubernetesProvider
) -> None:
    widget = manifest("example.com/v1", "Widget", "w1", spec={"size": 1})
    with pytest.raises(ProviderError) as info:
        await apply(provider, kube, [widget])

    assert info.value.code == "apply_failed"
    assert info.value.message == (
        "the cluster does not serve Widget (example.com/v1); is its CRD installed?"
    )


async def test_served_kinds_still_apply(kube: FakeKube, provider: KubernetesProvider) -> None:
    config = manifest("v1", "ConfigMap", "settings", data={"a": "1"})
    assert await apply(provider, kube, [config]) == {"applied": 1}
    assert kube.get("ConfigMap", "default", "settings") is not None


def test_every_removal_names_a_release_and_a_different_replacement() -> None:
    for (api_version, kind), removal in REMOVED.items():
        assert removal.release.startswith("1."), (api_version, kind)
        assert removal.replacement != api_version, (api_version, kind)
        assert f"removed in Kubernetes {removal.release}" in not_served(api_version, kind)
