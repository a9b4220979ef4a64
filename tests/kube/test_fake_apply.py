"""Server-side apply and CRDs on the fake API server through kubernetes-asyncio."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.dynamic import DynamicClient

from tests.kube.helpers import deployment, failure_of
from tests.support.kube import FakeKube

# ----------------------------------------------------------------------- server-side apply


async def test_server_side_apply_records_our_field_manager(
    dyn: DynamicClient, kube: FakeKube
) -> None:
    deployments = await dyn.resources.get(api_version="apps/v1", kind="Deployment")
    created = await dyn.server_side_apply(
        deployments, body=deployment("web"), namespace="default", field_manager="openpitrix"
    )
    assert created.metadata.generation == 1
    [entry] = created.to_dict()["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"]) == ("openpitrix", "Apply")
    fields = entry["fieldsV1"]
    container = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']
    assert container["f:image"] == {} and "." in container

    # Re-applying the same configuration changes nothing, not even the resourceVersion.
    await kube.settle()
    settled = (kube.get("Deployment", "default", "web") or {})["metadata"]["resourceVersion"]
    again = await dyn.server_side_apply(
        deployments, body=deployment("web"), namespace="default", field_manager="openpitrix"
    )
    assert again.metadata.resourceVersion == settled

    # A field dropped from our configuration is removed (and defaulted again by the server).
    smaller = deployment("web")
    del smaller["spec"]["replicas"]
    shrunk = await dyn.server_side_apply(
        deployments, body=smaller, namespace="default", field_manager="openpitrix"
    )
    assert shrunk.spec.replicas == 1

    applies = kube.requests_matching("PATCH", "/apis/apps/v1/namespaces/default/deployments/web")
    assert {r.content_type for r in applies} == {"application/apply-patch+yaml"}
    assert {r.param("fieldManager") for r in applies} == {"openpitrix"}

    no_manager = await failure_of(
        dyn.server_side_apply(deployments, body=deployment("web"), namespace="default")
    )
    assert no_manager["code"] == 400
    assert no_manager["message"] == "fieldManager is required for apply requests"


async def test_apply_conflicts_with_another_manager_unless_forced(
    dyn: DynamicClient, api: ApiClient, kube: FakeKube
) -> None:
    deployments = await dyn.resources.get(api_version="apps/v1", kind="Deployment")
    await dyn.server_side_apply(
        deployments, body=deployment("web"), namespace="default", field_manager="openpitrix"
    )
    await kube.settle()
    # Someone scales it by hand: an Update by another manager takes spec.replicas.
    await client.AppsV1Api(api).patch_namespaced_deployment(
        "web", "default", {"spec": {"replicas": 5}}, field_manager="kubectl-edit"
    )
    assert kube.managers("Deployment", "default", "web") == {
        "openpitrix": ["Apply"],
        "kube-controller-manager": ["Update/status"],
        "kubectl-edit": ["Update"],
    }

    body = await failure_of(
        dyn.server_side_apply(
            deployments, body=deployment("web"), namespace="default", field_manager="openpitrix"
        )
    )
    assert body["code"] == 409 and body["reason"] == "Conflict"
    assert body["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl-edit" using apps/v1',
            "field": ".spec.replicas",
        }
    ]

    # Applying the value the other manager set is no conflict: ownership is shared.
    shared = deployment("web", replicas=5)
    await dyn.server_side_apply(
        deployments, body=shared, namespace="default", field_manager="openpitrix"
    )

    forced = await dyn.server_side_apply(
        deployments,
        body=deployment("web", replicas=2),
        namespace="default",
        field_manager="openpitrix",
        force_conflicts=True,
    )
    assert forced.spec.replicas == 2
    entries = {e["manager"]: e for e in forced.to_dict()["metadata"]["managedFields"]}
    assert "f:replicas" in entries["openpitrix"]["fieldsV1"]["f:spec"]
    assert "kubectl-edit" not in entries  # it owned nothing else, so its entry is gone


# ------------------------------------------------------------------------------------ CRDs


_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {
            "plural": "widgets",
            "singular": "widget",
            "kind": "Widget",
            "shortNames": ["wd"],
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer"},
                                    "color": {"type": "string", "enum": ["red", "blue"]},
                                },
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


async def test_crd_makes_its_custom_resources_servable(dyn: DynamicClient, kube: FakeKube) -> None:
    crds = await dyn.resources.get(
        api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
    )
    crd = await dyn.create(crds, body=_CRD)
    assert {c["type"]: c["status"] for c in crd.to_dict()["status"]["conditions"]} == {
        "NamesAccepted": "True",
        "Established": "True",
    }

    await dyn.resources.invalidate_cache()
    widgets = await dyn.resources.get(api_version="example.com/v1", kind="Widget")
    assert widgets.namespaced and widgets.subresources.get("status") is not None
    made = await dyn.server_side_apply(
        widgets,
        namespace="default",
        field_manager="openpitrix",
        body={
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 3, "shape": "round"},
        },
    )
    assert made.spec.to_dict() == {"size": 3}  # unknown fields are pruned by the schema
    assert made.metadata.generation == 1

    invalid = await failure_of(
        dyn.create(
            widgets,
            namespace="default",
            body={
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "metadata": {"name": "bad"},
                "spec": {"size": "big", "color": "green"},
            },
        )
    )
    assert invalid["code"] == 422
    assert "spec.size in body must be of type integer" in invalid["message"]
    assert 'spec.color: Unsupported value: "green"' in invalid["message"]

    listed = await dyn.get(widgets, namespace="default")
    assert [i["metadata"]["name"] for i in listed.to_dict()["items"]] == ["w"]

    await dyn.delete(crds, name="widgets.example.com")
    assert kube.objects("CustomResourceDefinition") == []
    await dyn.resources.invalidate_cache()
    with pytest.raises(Exception):  # noqa: B017, PT011 - the dynamic client's own "not found"
        await dyn.resources.get(api_version="example.com/v1", kind="Widget")
