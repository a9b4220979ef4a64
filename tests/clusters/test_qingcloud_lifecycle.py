"""VM clusters on QingCloud through the API, with real workers and NATS, against the fake
QingCloud: every lifecycle action checked against the fake's instances and volumes, per-node
progress on the job's stream, the cloud's refusals as the job's error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import unique
from tests.helpers import assert_error, wait_job
from tests.support.deployments import deploy
from tests.support.http_repo import RepoServer
from tests.support.qingcloud_fake import QingCloudFake, running_fake
from tests.support.qingcloud_vm import (
    credential_of,
    in_cloud,
    prepare_qingcloud_runtime,
    volumes_of,
    write_shop_repo,
)
from tests.support.vm_scenarios import Jobs, cluster_of, nodes_of

ACTIONS = ["create", "stop", "start", "resize", "add_nodes", "delete_nodes", "delete"]
ACTIONS += ["recover", "cease"]


@pytest.fixture
def qingcloud() -> Iterator[QingCloudFake]:
    with running_fake(job_delay=0.02) as fake:
        yield fake


@pytest.fixture
def vm_repo(repo_dir: Path, repo_server: RepoServer) -> RepoServer:
    write_shop_repo(repo_dir)
    return repo_server


@pytest.fixture
async def vm(
    client: httpx.AsyncClient, qingcloud: QingCloudFake, vm_repo: RepoServer
) -> dict[str, Any]:
    return await prepare_qingcloud_runtime(client, qingcloud, vm_repo.url)


def same_as_cloud(nodes: dict[str, dict[str, Any]], made: dict[str, dict[str, Any]]) -> None:
    """The API's nodes are the fake's instances: ids, addresses, status, sizes."""
    assert set(nodes) == set(made)
    for node_id, inst in made.items():
        node = nodes[node_id]
        assert node["role"] == node_id.rsplit("-", 1)[0]
        assert (node["instance_id"], node["private_ip"], node["status"]) == (
            inst["instance_id"],
            inst["private_ip"],
            inst["status"],
        )
        assert (node["cpu"], node["memory"], node["volume_size"]) == (
            inst["cpu"],
            inst["memory"],
            inst["volume_size"],
        )


async def test_a_qingcloud_vm_cluster_goes_through_its_whole_lifecycle(
    client: httpx.AsyncClient, qingcloud: QingCloudFake, vm: dict[str, Any]
) -> None:
    providers = {p["name"]: p for p in (await client.get("/v1/providers")).json()["items"]}
    assert providers["qingcloud"]["cluster_actions"] == ACTIONS
    assert providers["qingcloud"]["package_kinds"] == ["vm"]

    # Create: previewed as nodes and volumes, launched, running, volumes attached.
    preview = await client.post(
        "/v1/clusters",
        json={
            "version_id": vm["versions"]["shop@1.0.0"],
            "runtime_id": vm["runtime"]["runtime_id"],
            "name": "preview",
            "values": {},
            "dry_run": True,
        },
    )
    assert preview.status_code == 200, preview.text
    assert [(c["kind"], c["resource"]) for c in preview.json()["changes"]] == [
        ("create", "node web-1"),
        ("create", "node web-2"),
        ("create", "node db-1"),
        ("create", "volume db-1/data"),
    ]
    assert qingcloud.instances() == []  # a preview makes nothing
    made = await deploy(client, vm, "shop@1.0.0", values={})
    cid = made["cluster_id"]
    jobs = Jobs(client)
    job = await jobs.finished(made["job_id"])
    assert [t["action"] for t in job["tasks"]] == [
        "render_spec",
        "check",
        "launch",
        "await_running",
        "attach_volumes",
        "survey",
    ]
    messages = job["messages"]
    # Progress per node: launched, then running at its address, then its volume.
    cloud = in_cloud(qingcloud, cid)
    for node_id in ("web-1", "web-2", "db-1"):
        inst = cloud[node_id]
        assert f"launched {node_id} ({inst['instance_id']})" in messages, messages
        assert f"{node_id} running at {inst['private_ip']}" in messages, messages
    db_volume = cloud["db-1"]["volume_id"]
    assert f"volume db-1/data ({db_volume}, 10 GiB) attached" in messages, messages
    cluster = await cluster_of(client, cid)
    assert (cluster["status"], cluster["provider"]) == ("active", "qingcloud")
    assert [(r["role"], r["status"], r["count"]) for r in cluster["roles"]] == [
        ("db", "running", 1),
        ("web", "running", 2),
    ]
    assert sorted(cloud) == ["db-1", "web-1", "web-2"]
    assert {i["status"] for i in cloud.values()} == {"running"}
    # Sized, imaged and booted as the package says: the web role's own image, the db on
    # the provider's default; env and the init then start services in user data.
    assert [(cloud[n]["cpu"], cloud[n]["memory"]) for n in ("web-1", "db-1")] == [
        (1, 1024),
        (2, 4096),
    ]
    assert (cloud["web-1"]["image_id"], cloud["db-1"]["image_id"]) == (
        "bionic1x64",
        "centos7x64d",
    )
    script = cloud["web-1"]["userdata"]
    assert script.startswith("#!/bin/sh\n")
    assert "export OP_NODE_ID=web-1\n" in script and "export PORT=8080\n" in script
    assert "export APP=shop\n" in script
    assert script.index("mkdir -p /srv/shop") < script.index("systemctl start shop-web")
    assert "never at boot" not in script  # scale_out cannot run without an agent
    assert (cloud["db-1"]["volume_size"], cloud["web-1"]["volume_id"]) == (10, "")
    nodes = await nodes_of(client, cid)
    same_as_cloud(nodes, cloud)
    assert len({n["private_ip"] for n in nodes.values()}) == 3
    release = (await client.get(f"/v1/clusters/{cid}/releases/1")).json()
    assert [o["node_id"] for o in release["manifest"]] == ["web-1", "web-2", "db-1"]

    # Stop: every instance stops; the job's stream shows QingCloud's job.
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/stop"))
    assert [t["action"] for t in job["tasks"]] == ["services", "stop", "survey"]
    assert "3 instances stopped" in job["messages"]
    assert any(m.startswith("QingCloud StopInstances j-") for m in job["messages"])
    assert (await cluster_of(client, cid))["status"] == "stopped"
    assert {i["status"] for i in in_cloud(qingcloud, cid).values()} == {"stopped"}
    same_as_cloud(await nodes_of(client, cid), in_cloud(qingcloud, cid))

    # Resize while stopped: the db volume grows (detached, grown, attached again), the
    # cluster stays stopped.
    job = await jobs.done(
        await client.post(
            f"/v1/clusters/{cid}/actions/resize", json={"role": "db", "volume_size": 30}
        )
    )
    assert [t["action"] for t in job["tasks"]] == ["resize", "survey"]
    cloud = in_cloud(qingcloud, cid)
    assert (cloud["db-1"]["volume_id"], cloud["db-1"]["volume_size"]) == (db_volume, 30)
    assert {i["status"] for i in cloud.values()} == {"stopped"}
    assert (await cluster_of(client, cid))["status"] == "stopped"

    # Start: running again.
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/start", json={}))
    assert [t["action"] for t in job["tasks"]] == ["start", "await_running", "survey"]
    assert (await cluster_of(client, cid))["status"] == "active"
    assert {i["status"] for i in in_cloud(qingcloud, cid).values()} == {"running"}

    # Resize a role while active: its instances stop, resize, and run again.
    preview = await client.post(
        f"/v1/clusters/{cid}/actions/resize",
        json={"role": "web", "cpu": 2, "memory": 2048, "dry_run": True},
    )
    assert preview.status_code == 200, preview.text
    assert [(c["kind"], c["resource"]) for c in preview.json()["changes"]] == [
        ("update", "node web-1"),
        ("update", "node web-2"),
    ]
    assert preview.json()["changes"][0]["diff"] == [
        {"path": "cpu", "before": 1, "after": 2},
        {"path": "memory", "before": 1024, "after": 2048},
    ]
    await jobs.done(
        await client.post(
            f"/v1/clusters/{cid}/actions/resize", json={"role": "web", "cpu": 2, "memory": 2048}
        )
    )
    cloud = in_cloud(qingcloud, cid)
    assert [(cloud[n]["cpu"], cloud[n]["memory"], cloud[n]["status"]) for n in cloud] == [
        (2, 2048, "running"),
        (2, 2048, "running"),
        (2, 4096, "running"),
    ]
    assert (await cluster_of(client, cid))["status"] == "active"
    same_as_cloud(await nodes_of(client, cid), cloud)

    # Add nodes: made like the role's others (resized since), numbered on.
    preview = await client.post(
        f"/v1/clusters/{cid}/actions/add-nodes", json={"role": "web", "count": 2, "dry_run": True}
    )
    assert [(c["kind"], c["resource"]) for c in preview.json()["changes"]] == [
        ("create", "node web-3"),
        ("create", "node web-4"),
    ]
    job = await jobs.done(
        await client.post(f"/v1/clusters/{cid}/actions/add-nodes", json={"role": "web", "count": 2})
    )
    assert [t["action"] for t in job["tasks"]] == [
        "check",
        "launch",
        "await_running",
        "attach_volumes",
        "services",
        "survey",
    ]
    cloud = in_cloud(qingcloud, cid)
    assert sorted(cloud) == ["db-1", "web-1", "web-2", "web-3", "web-4"]
    assert (cloud["web-4"]["cpu"], cloud["web-4"]["memory"], cloud["web-4"]["status"]) == (
        2,
        2048,
        "running",
    )
    assert f"launched web-4 ({cloud['web-4']['instance_id']})" in job["messages"]
    # The web role's scale_out would run on web-1 and web-2: QingCloud has no service to run it.
    assert "cannot run scale_out of web on qingcloud: no run-command service" in job["messages"]
    same_as_cloud(await nodes_of(client, cid), cloud)

    # Delete nodes: their instances are terminated (and a node's volume deleted).
    await jobs.done(
        await client.post(
            f"/v1/clusters/{cid}/actions/delete-nodes", json={"node_ids": ["web-2", "web-3"]}
        )
    )
    cloud = in_cloud(qingcloud, cid)
    assert sorted(cloud) == ["db-1", "web-1", "web-4"]
    same_as_cloud(await nodes_of(client, cid), cloud)

    # Delete: the instances stop and are kept with their volumes; recover starts the same.
    kept = {k: v["instance_id"] for k, v in cloud.items()}
    job = await jobs.done(await client.delete(f"/v1/clusters/{cid}"))
    assert [t["action"] for t in job["tasks"]] == ["services", "stop", "survey"]
    assert (await cluster_of(client, cid))["status"] == "deleted"
    assert {i["status"] for i in in_cloud(qingcloud, cid).values()} == {"stopped"}
    assert list(volumes_of(qingcloud, cid)) == [f"{cid}-db-1-data"]
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/recover"))
    assert [t["action"] for t in job["tasks"]] == ["start", "await_running", "survey"]
    assert (await cluster_of(client, cid))["status"] == "active"
    cloud = in_cloud(qingcloud, cid)
    assert {k: v["instance_id"] for k, v in cloud.items()} == kept
    assert {i["status"] for i in cloud.values()} == {"running"}
    assert cloud["db-1"]["volume_id"] == db_volume

    # Delete again, then cease: every instance terminated, every volume deleted.
    await jobs.done(await client.delete(f"/v1/clusters/{cid}"))
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/cease"))
    assert [t["action"] for t in job["tasks"]] == ["services", "terminate", "survey"]
    assert in_cloud(qingcloud, cid) == {}
    assert volumes_of(qingcloud, cid) == {}
    cluster = await cluster_of(client, cid)
    assert (cluster["status"], cluster["nodes"], cluster["roles"]) == ("ceased", [], [])


async def test_a_quota_too_small_fails_the_create_before_anything_is_made(
    client: httpx.AsyncClient, qingcloud: QingCloudFake, vm: dict[str, Any]
) -> None:
    qingcloud.quota["instance"] = 2
    # A preview says so first, as the create's check task would.
    preview = await client.post(
        "/v1/clusters",
        json={
            "version_id": vm["versions"]["shop@1.0.0"],
            "runtime_id": vm["runtime"]["runtime_id"],
            "name": "preview",
            "values": {},
            "dry_run": True,
        },
    )
    error = assert_error(preview, 409, "insufficient_resources")
    assert "3 instances needed, 2 left" in error["message"], error
    made = await deploy(client, vm, "shop@1.0.0", values={})
    job = await wait_job(client, made["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "insufficient_resources", job["error"]
    assert "3 instances needed, 2 left" in job["error"]["message"], job["error"]
    assert [t["action"] for t in job["tasks"] if t["status"] == "failed"] == ["check"]
    assert qingcloud.instances() == []
    assert "RunInstances" not in qingcloud.actions()


async def test_the_clouds_refusal_is_the_jobs_error(
    client: httpx.AsyncClient, qingcloud: QingCloudFake, vm: dict[str, Any]
) -> None:
    # The quotas look fine, but QingCloud refuses the launch itself.
    qingcloud.fail_next(
        "RunInstances", 2500, "QuotaExceeded, the quota of [cpu] left is [0], but [1] is needed"
    )
    made = await deploy(client, vm, "shop@1.0.0", values={})
    job = await wait_job(client, made["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "insufficient_resources", job["error"]
    assert "QingCloud RunInstances: QuotaExceeded" in job["error"]["message"], job["error"]
    cluster = await cluster_of(client, made["cluster_id"])
    assert cluster["transition_status"] == "", cluster


async def test_a_wrong_secret_is_refused_as_the_kubernetes_credentials_are(
    client: httpx.AsyncClient, qingcloud: QingCloudFake
) -> None:
    wrong = credential_of(qingcloud, secret="not-the-secret")
    checked = await client.post(
        "/v1/runtime-credentials/validate",
        json={"provider": "qingcloud", "endpoint_url": qingcloud.url, "content": wrong},
    )
    assert checked.json()["ok"] is False, checked.text
    assert checked.json()["error"]["code"] == "credential_invalid"
    refused = await client.post(
        "/v1/runtime-credentials",
        json={
            "name": unique("cred"),
            "provider": "qingcloud",
            "endpoint_url": qingcloud.url,
            "content": wrong,
        },
    )
    error = assert_error(refused, 400, "credential_invalid")
    assert "not-the-secret" not in refused.text
    assert "AuthFailure" in error["message"], error


async def test_a_qingcloud_zone_is_shared_by_any_number_of_runtimes(
    client: httpx.AsyncClient, qingcloud: QingCloudFake, vm: dict[str, Any]
) -> None:
    # A cloud's zone belongs to no runtime (unlike a namespace): a second runtime on the same
    # zone and endpoint, through the same credential, is made and lives beside the first.
    zone = vm["runtime"]["zone"]
    second = await client.post(
        "/v1/runtimes",
        json={"name": unique("rt"), "credential_id": vm["credential_id"], "zone": zone},
    )
    assert second.status_code == 201, second.text
    listed = await client.get(
        "/v1/runtimes", params={"credential_id": vm["credential_id"], "zone": zone}
    )
    assert listed.json()["total_count"] == 2
    providers = {p["name"]: p for p in (await client.get("/v1/providers")).json()["items"]}
    assert providers["qingcloud"]["exclusive_zones"] is False
    assert providers["kubernetes"]["exclusive_zones"] is True
