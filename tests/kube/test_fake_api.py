"""The fake API server's CRUD semantics through kubernetes-asyncio's typed client."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from tests.kube.helpers import create_namespace, deployment, status_of
from tests.support.kube import FakeKube

# ------------------------------------------------------------------------------ CRUD basics


async def test_create_get_list_with_label_selectors(api: ApiClient) -> None:
    core = client.CoreV1Api(api)
    await create_namespace(api, "shop")
    for name, labels in [
        ("a", {"tier": "web", "env": "prod"}),
        ("b", {"tier": "db", "env": "prod"}),
        ("c", {"tier": "cache"}),
    ]:
        await core.create_namespaced_config_map(
            "shop", {"metadata": {"name": name, "labels": labels}, "data": {"k": name}}
        )

    got = await core.read_namespaced_config_map("c", "shop")
    assert got.data == {"k": "c"}
    assert got.metadata.uid and got.metadata.creation_timestamp
    assert got.metadata.resource_version.isdigit()

    async def names(selector: str) -> list[str]:
        listed = await core.list_namespaced_config_map("shop", label_selector=selector)
        return sorted(
            i.metadata.name for i in listed.items if i.metadata.name != "kube-root-ca.crt"
        )

    assert await names("env=prod") == ["a", "b"]
    assert await names("env==prod,tier!=db") == ["a"]
    assert await names("tier in (web, cache)") == ["a", "c"]
    assert await names("tier notin (web),env") == ["b"]
    assert await names("!env") == ["c"]
    assert await names("tier!=web") == ["b", "c"]
    by_name = await core.list_namespaced_config_map("shop", field_selector="metadata.name=b")
    assert [i.metadata.name for i in by_name.items] == ["b"]
    listed = await core.list_namespaced_config_map("shop")
    assert int(listed.metadata.resource_version) >= int(got.metadata.resource_version)

    with pytest.raises(ApiException) as bad:
        await core.list_namespaced_config_map("shop", label_selector="tier in (web")
    assert bad.value.status == 400


async def test_errors_are_status_objects(api: ApiClient) -> None:
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    with pytest.raises(ApiException) as missing:
        await apps.read_namespaced_deployment("nope", "default")
    assert missing.value.status == 404
    assert status_of(missing.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "group": "apps", "kind": "deployments"},
        "code": 404,
    }

    with pytest.raises(ApiException) as no_namespace:
        await core.create_namespaced_config_map("ghost", {"metadata": {"name": "x"}})
    assert no_namespace.value.status == 404
    assert status_of(no_namespace.value)["message"] == 'namespaces "ghost" not found'

    await core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
    with pytest.raises(ApiException) as exists:
        await core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
    assert exists.value.status == 409
    assert status_of(exists.value)["reason"] == "AlreadyExists"

    with pytest.raises(ApiException) as invalid:
        await apps.create_namespaced_deployment(
            "default",
            {
                **deployment("web"),
                "spec": {
                    **deployment("web")["spec"],
                    "selector": {"matchLabels": {"app": "other"}},
                },
            },
        )
    assert invalid.value.status == 422
    body = status_of(invalid.value)
    assert body["reason"] == "Invalid"
    assert body["details"]["kind"] == "Deployment"
    assert "`selector` does not match template `labels`" in body["message"]


async def test_replace_with_stale_resource_version_conflicts(api: ApiClient) -> None:
    core = client.CoreV1Api(api)
    created = await core.create_namespaced_config_map(
        "default", {"metadata": {"name": "cfg"}, "data": {"a": "1"}}
    )
    stale = created.metadata.resource_version
    created.data = {"a": "2"}
    updated = await core.replace_namespaced_config_map("cfg", "default", created)
    assert int(updated.metadata.resource_version) > int(stale)

    created.data = {"a": "3"}
    created.metadata.resource_version = stale
    with pytest.raises(ApiException) as conflict:
        await core.replace_namespaced_config_map("cfg", "default", created)
    assert conflict.value.status == 409
    body = status_of(conflict.value)
    assert body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]
    assert (await core.read_namespaced_config_map("cfg", "default")).data == {"a": "2"}


async def test_generation_bumps_on_spec_changes_only(api: ApiClient, kube: FakeKube) -> None:
    apps = client.AppsV1Api(api)
    created = await apps.create_namespaced_deployment("default", deployment("web"))
    assert created.metadata.generation == 1
    labelled = await apps.patch_namespaced_deployment(
        "web", "default", {"metadata": {"labels": {"team": "a"}}}
    )
    assert labelled.metadata.generation == 1
    assert int(labelled.metadata.resource_version) > int(created.metadata.resource_version)
    scaled = await apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}})
    assert scaled.metadata.generation == 2


async def test_delete_namespace_deletes_its_objects(api: ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    await create_namespace(api, "temp")
    await core.create_namespaced_secret(
        "temp", {"metadata": {"name": "s"}, "stringData": {"password": "x"}}
    )
    secret = await core.read_namespaced_secret("s", "temp")
    assert secret.data == {"password": "eA=="} and secret.type == "Opaque"

    await core.delete_namespace("temp")
    assert (await core.read_namespace("temp")).status.phase == "Terminating"
    with pytest.raises(ApiException) as terminating:
        await core.create_namespaced_config_map("temp", {"metadata": {"name": "late"}})
    assert terminating.value.status == 403
    await kube.settle()
    assert kube.objects("secrets", "temp") == []
    with pytest.raises(ApiException) as missing:
        await core.read_namespace("temp")
    assert missing.value.status == 404


async def test_delete_collection_by_label_selector(api: ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    for name, app in [("a", "x"), ("b", "x"), ("c", "y")]:
        await core.create_namespaced_config_map(
            "default", {"metadata": {"name": name, "labels": {"app": app}}}
        )
    await core.delete_collection_namespaced_config_map("default", label_selector="app=x")
    left = sorted(o["metadata"]["name"] for o in kube.objects("ConfigMap", "default"))
    assert left == ["c", "kube-root-ca.crt"]


# ---------------------------------------------------------------------------------- patches


async def test_merge_strategic_and_json_patches(api: ApiClient) -> None:
    apps = client.AppsV1Api(api)
    spec = deployment("web")
    spec["spec"]["template"]["spec"]["containers"].append(
        {"name": "sidecar", "image": "busybox:1.36"}
    )
    await apps.create_namespaced_deployment("default", spec)

    # Strategic merge: containers merge by name, so the sidecar survives.
    patched = await apps.patch_namespaced_deployment(
        "web",
        "default",
        {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}},
    )
    images = {c.name: c.image for c in patched.spec.template.spec.containers}
    assert images == {"web": "nginx:1.28", "sidecar": "busybox:1.36"}

    # JSON merge patch: a list is replaced as a whole; null deletes a key.
    merged = await apps.patch_namespaced_deployment(
        "web",
        "default",
        {
            "metadata": {"labels": {"app": None, "tier": "front"}},
            "spec": {
                "template": {"spec": {"containers": [{"name": "only", "image": "nginx:1.29"}]}}
            },
        },
        _content_type="application/merge-patch+json",
    )
    assert [c.name for c in merged.spec.template.spec.containers] == ["only"]
    assert merged.metadata.labels == {"tier": "front"}

    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 2},
        {"op": "replace", "path": "/spec/replicas", "value": 4},
        {"op": "add", "path": "/metadata/annotations", "value": {"note": "x"}},
    ]
    jsoned = await apps.patch_namespaced_deployment(
        "web", "default", ops, _content_type="application/json-patch+json"
    )
    assert jsoned.spec.replicas == 4 and jsoned.metadata.annotations == {"note": "x"}
    with pytest.raises(ApiException) as failed:
        await apps.patch_namespaced_deployment(
            "web",
            "default",
            [{"op": "test", "path": "/spec/replicas", "value": 1}],
            _content_type="application/json-patch+json",
        )
    assert failed.value.status == 422


async def test_strict_field_validation_rejects_unknown_fields(
    api: ApiClient, kube: FakeKube
) -> None:
    core = client.CoreV1Api(api)
    body = {"metadata": {"name": "cfg"}, "data": {"a": "1"}, "dataa": {"b": "2"}}
    with pytest.raises(ApiException) as strict:
        await core.create_namespaced_config_map("default", body, field_validation="Strict")
    assert strict.value.status == 400
    assert 'unknown field "dataa"' in status_of(strict.value)["message"]

    # The default (Warn) drops the field and says so in a Warning header.
    response = await api.call_api(
        "/api/v1/namespaces/default/configmaps",
        "POST",
        body=body,
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        auth_settings=["BearerToken"],
        _preload_content=False,
    )
    response.release()
    assert response.status == 201
    assert 'unknown field \\"dataa\\"' in response.headers["Warning"]
    assert "dataa" not in (kube.get("ConfigMap", "default", "cfg") or {})


async def test_requests_need_the_kubeconfig_token(kube: FakeKube, tmp_path: Path) -> None:
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(kube.kubeconfig(tmp_path / "kc")), client_configuration=configuration
    )
    configuration.api_key = {}
    async with ApiClient(configuration=configuration) as anonymous:
        with pytest.raises(ApiException) as denied:
            await client.CoreV1Api(anonymous).list_namespace()
    assert denied.value.status == 401
    assert status_of(denied.value)["reason"] == "Unauthorized"


async def test_list_pages_with_limit_and_continue(api: ApiClient) -> None:
    core = client.CoreV1Api(api)
    for i in range(5):
        await core.create_namespaced_config_map("default", {"metadata": {"name": f"page-{i}"}})
    names: list[str] = []
    token = None
    while True:
        page = await core.list_namespaced_config_map("default", limit=2, _continue=token)
        names += [i.metadata.name for i in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count > 0
    assert names == ["kube-root-ca.crt", *(f"page-{i}" for i in range(5))]


async def test_finalizers_hold_deletion_until_removed(api: ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    body = {"metadata": {"name": "held", "finalizers": ["example.com/cleanup"]}}
    await core.create_namespaced_config_map("default", body)
    await core.delete_namespaced_config_map("held", "default")
    held = await core.read_namespaced_config_map("held", "default")
    assert held.metadata.deletion_timestamp is not None
    await core.patch_namespaced_config_map("held", "default", {"metadata": {"finalizers": None}})
    assert kube.get("ConfigMap", "default", "held") is None


async def test_orphan_propagation_keeps_dependents(api: ApiClient, kube: FakeKube) -> None:
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment("default", deployment("web"))
    await kube.settle()
    await apps.delete_namespaced_deployment("web", "default", propagation_policy="Orphan")
    [rs] = kube.objects("ReplicaSet", "default")
    assert "ownerReferences" not in rs["metadata"]
    assert len(kube.objects("Pod", "default")) == 2


async def test_dry_run_validates_without_storing(api: ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    body = {"metadata": {"name": "dry"}, "data": {"a": "1"}}
    answer = await core.create_namespaced_config_map("default", body, dry_run="All")
    assert answer.metadata.uid and answer.data == {"a": "1"}
    assert kube.get("ConfigMap", "default", "dry") is None
    with pytest.raises(ApiException) as bad:
        await core.create_namespaced_config_map(
            "default", {"metadata": {"name": "Bad_Name"}}, dry_run="All"
        )
    assert bad.value.status == 422


async def test_field_selector_on_namespace_across_namespaces(api: ApiClient) -> None:
    core = client.CoreV1Api(api)
    await create_namespace(api, "a")
    await core.create_namespaced_config_map("a", {"metadata": {"name": "x"}})
    await core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
    found = await core.list_config_map_for_all_namespaces(
        field_selector="metadata.namespace=a,metadata.name=x"
    )
    assert [(i.metadata.namespace, i.metadata.name) for i in found.items] == [("a", "x")]
    with pytest.raises(ApiException) as unsupported:
        await core.list_config_map_for_all_namespaces(field_selector="data.x=1")
    assert status_of(unsupported.value)["message"] == "field label not supported: data.x"
