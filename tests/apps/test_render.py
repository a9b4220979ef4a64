"""VM app versions through the API: indexed from a repo served over HTTP (one that also serves a
Helm chart), their package kind shown and filtered, and rendered into cluster specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import unique
from tests.helpers import assert_error, create_repo, wait_job
from tests.support.charts import ChartSpec
from tests.support.http_repo import RepoServer
from tests.support.vm import credential_of, make_cloud
from tests.support.vmpackages import (
    ReadmeExample,
    VmPackageSpec,
    helm_entry,
    op_create_package,
    readme_example,
    write_vm_index,
)

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def example() -> ReadmeExample:
    return readme_example(README)


@pytest.fixture
def broken() -> VmPackageSpec:
    """A package whose template reads a setting config.json does not declare."""
    spec = op_create_package("broken", "0.1.0")
    spec.template = spec.template.replace(
        '"subnet": "{{.cluster.subnet}}",',
        '"subnet": "{{.cluster.subnet}}",\n    "zone": "{{.cluster.zone}}",',
    )
    return spec


@pytest.fixture
def mixed_repo(
    repo_dir: Path, repo_server: RepoServer, example: ReadmeExample, broken: VmPackageSpec
) -> RepoServer:
    """One repo serving the README's guestbook, OpenPitrix's `op create` package, a broken
    VM package and a Helm chart, in the index shape OpenPitrix's `op index` wrote."""
    chart = ChartSpec("redis", "7.0.1", app_version="7.0.1")
    write_vm_index(
        repo_dir,
        [example.package, op_create_package("nginx", "0.1.0"), broken],
        helm_entries={"redis": [helm_entry(repo_dir, chart)]},
    )
    return repo_server


async def _versions(client: httpx.AsyncClient, repo_id: str) -> dict[str, dict[str, Any]]:
    apps = (await client.get("/v1/apps", params={"repo_id": repo_id, "limit": 50})).json()
    found: dict[str, dict[str, Any]] = {}
    for app in apps["items"]:
        page = (await client.get(f"/v1/apps/{app['app_id']}/versions")).json()
        assert page["total_count"] == 1, page
        found[app["name"]] = page["items"][0]
    return found


@pytest.fixture
async def versions(client: httpx.AsyncClient, mixed_repo: RepoServer) -> dict[str, Any]:
    repo = await create_repo(
        client, unique(), mixed_repo.url, providers=["testcloud", "kubernetes"]
    )
    job = await wait_job(client, repo["index_job_id"])
    assert job["status"] == "successful", job
    return {"repo_id": repo["repo_id"], **await _versions(client, repo["repo_id"])}


async def test_a_repo_serving_both_kinds_indexes_each_version_with_its_kind(
    client: httpx.AsyncClient, versions: dict[str, Any]
) -> None:
    kinds = {name: v["package_kind"] for name, v in versions.items() if name != "repo_id"}
    assert kinds == {"guestbook": "vm", "nginx": "vm", "broken": "vm", "redis": "helm"}
    guestbook = versions["guestbook"]
    # package.json's snake-case fields reach the catalog like Chart.yaml's camel-case ones.
    assert guestbook["app_version"] == "2.1"
    assert guestbook["description"].startswith("A guestbook")
    assert versions["redis"]["app_version"] == "7.0.1"

    vm_apps = await client.get(
        "/v1/apps", params={"repo_id": versions["repo_id"], "package_kind": "vm"}
    )
    assert sorted(a["name"] for a in vm_apps.json()["items"]) == ["broken", "guestbook", "nginx"]
    helm_apps = await client.get(
        "/v1/apps", params={"repo_id": versions["repo_id"], "package_kind": "helm"}
    )
    assert [a["name"] for a in helm_apps.json()["items"]] == ["redis"]
    app_id = guestbook["app_id"]
    none = await client.get(f"/v1/apps/{app_id}/versions", params={"package_kind": "helm"})
    assert none.json()["total_count"] == 0
    some = await client.get(f"/v1/apps/{app_id}/versions", params={"package_kind": "vm"})
    assert [v["version_id"] for v in some.json()["items"]] == [guestbook["version_id"]]


async def test_the_readme_example_renders_exactly_as_printed(
    client: httpx.AsyncClient, versions: dict[str, Any], example: ReadmeExample
) -> None:
    version_id = versions["guestbook"]["version_id"]
    assert example.request_line == "POST /v1/app-versions/appv-.../render"
    resp = await client.post(f"/v1/app-versions/{version_id}/render", json=example.request)
    assert resp.status_code == 200, resp.text
    expected = {**example.response, "version_id": version_id}
    assert resp.json() == expected

    bad = await client.post(f"/v1/app-versions/{version_id}/render", json=example.invalid_request)
    assert_error(bad, 422, "invalid_settings")
    assert bad.json() == example.invalid_response


async def test_every_invalid_setting_is_named_with_its_field(
    client: httpx.AsyncClient, versions: dict[str, Any]
) -> None:
    version_id = versions["guestbook"]["version_id"]
    conf = {
        "cluster": {"web": {"count": 0, "memory": "1024"}, "zone": "pek3"},
        "env": {"admin_email": "not an address", "max_connections": 10.5},
    }
    resp = await client.post(f"/v1/app-versions/{version_id}/render", json={"conf": conf})
    body = assert_error(resp, 422, "invalid_settings")
    named = {(e["file"], e["field"]): e["message"] for e in body["details"]["errors"]}
    assert named == {
        ("conf", "cluster.zone"): "unknown setting",
        ("conf", "cluster.web.count"): "0 is less than min 1",
        ("conf", "cluster.web.memory"): "'1024' is not an integer",
        ("conf", "env.admin_email"): "does not match pattern '^[^@ ]+@[^@ ]+$'",
        ("conf", "env.max_connections"): "10.5 is not an integer",
    }


async def test_openpitrix_op_create_package_renders_its_defaults_as_openpitrix_did(
    client: httpx.AsyncClient, versions: dict[str, Any]
) -> None:
    version_id = versions["nginx"]["version_id"]
    resp = await client.post(f"/v1/app-versions/{version_id}/render", json={})
    assert resp.status_code == 200, resp.text
    cluster = resp.json()["cluster"]
    # What OpenPitrix's Go renderer made of `op create`'s files with the default settings.
    assert {k: cluster[k] for k in ("name", "description", "subnet")} == {
        "name": "nginx",
        "description": "",
        "subnet": "",
    }
    (node,) = cluster["nodes"]
    assert {k: node[k] for k in ("role", "count", "cpu", "memory", "instance_class")} == {
        "role": "role_name1",
        "count": 3,
        "cpu": 1,
        "memory": 2048,
        "instance_class": 0,
    }
    assert node["container"] == {"type": "docker", "image": "nginx"}
    assert node["volume"] == {"size": 10, "mount_point": "/test_data", "filesystem": "ext4"}


async def test_a_helm_chart_version_is_not_rendered_as_a_vm_package(
    client: httpx.AsyncClient, versions: dict[str, Any]
) -> None:
    version_id = versions["redis"]["version_id"]
    resp = await client.post(f"/v1/app-versions/{version_id}/render", json={"conf": {}})
    body = assert_error(resp, 409, "not_a_vm_package")
    assert body["details"] == {"package_kind": "helm"}


async def test_a_package_whose_template_reads_an_undeclared_setting_is_named_broken(
    client: httpx.AsyncClient, versions: dict[str, Any]
) -> None:
    version_id = versions["broken"]["version_id"]
    resp = await client.post(f"/v1/app-versions/{version_id}/render", json={"conf": {}})
    body = assert_error(resp, 422, "invalid_package")
    (error,) = body["details"]["errors"]
    assert error == {
        "file": "cluster.json.tmpl",
        "field": "line 6",
        "message": ".cluster.zone: no such key in the settings",
    }


async def test_a_package_the_repo_no_longer_serves_is_a_502_naming_the_fetch(
    client: httpx.AsyncClient, versions: dict[str, Any], repo_dir: Path
) -> None:
    (repo_dir / "guestbook-1.0.0.tgz").unlink()
    version_id = versions["guestbook"]["version_id"]
    resp = await client.post(f"/v1/app-versions/{version_id}/render", json={"conf": {}})
    body = assert_error(resp, 502, "package_unavailable")
    assert "guestbook-1.0.0.tgz answered HTTP 404" in body["message"]


async def test_rendering_an_unknown_version_is_404(client: httpx.AsyncClient) -> None:
    resp = await client.post("/v1/app-versions/appv-nothing/render", json={"conf": {}})
    assert_error(resp, 404, "not_found")


async def test_a_runtime_deploys_only_the_package_kinds_its_provider_takes(
    client: httpx.AsyncClient, versions: dict[str, Any], tmp_path: Path
) -> None:
    # The test cloud deploys Helm-packaged apps only (the default of a provider's
    # capabilities): a VM package is refused before any cluster or job exists.
    cloud = make_cloud(tmp_path)
    cred = await client.post(
        "/v1/runtime-credentials",
        json={"name": unique("c"), "provider": "testcloud", "content": credential_of(cloud)},
    )
    assert cred.status_code == 201, cred.text
    runtime = await client.post(
        "/v1/runtimes",
        json={
            "name": unique("rt"),
            "credential_id": cred.json()["credential_id"],
            "zone": "zone-a",
        },
    )
    assert runtime.status_code == 201, runtime.text
    providers = (await client.get("/v1/providers")).json()["items"]
    assert {p["name"]: p["package_kinds"] for p in providers}["testcloud"] == ["helm"]
    body = {"version_id": versions["guestbook"]["version_id"], "name": unique("cl")}
    body["runtime_id"] = runtime.json()["runtime_id"]
    resp = await client.post("/v1/clusters", json=body)
    error = assert_error(resp, 409, "package_kind_unsupported")
    assert "vm package" in error["message"] and "testcloud" in error["message"]
    preview = await client.post("/v1/clusters", json={**body, "dry_run": True})
    assert_error(preview, 409, "package_kind_unsupported")
    listed = await client.get("/v1/clusters", params={"runtime_id": body["runtime_id"]})
    assert listed.json()["total_count"] == 0
