"""The whole cluster lifecycle on a VM provider that is a plugin: the test cloud, installed
through an `openpitrix.providers` entry point the way a third-party package is, through the API
with real workers and NATS. Nothing in the server names it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from openpitrix_testcloud.cloud import Cloud

from openpitrix.netguard import AddressPolicy
from openpitrix.providers.base import Credential
from openpitrix.providers.registry import get_provider
from tests.helpers import assert_error, read_sse, wait_job
from tests.support.deployments import deploy
from tests.support.http_repo import RepoServer
from tests.support.vm import cloud_held, credential_of, instances, make_cloud, prepare_vm_runtime

VALUES = {
    "roles": {
        "web": {"count": 2, "cpu": 1, "memory": 1024},
        "db": {"count": 1, "cpu": 2, "memory": 4096, "volume_size": 50},
    }
}


@pytest.fixture
def cloud(tmp_path: Path) -> Cloud:
    return make_cloud(tmp_path)


@pytest.fixture
async def vm(client: httpx.AsyncClient, cloud: Cloud, shop_repo: RepoServer) -> dict[str, Any]:
    return await prepare_vm_runtime(client, cloud, shop_repo.url)


class Jobs:
    """Follows the jobs of one test to their ends, keeping their ids in order."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.ids: list[str] = []

    async def done(self, resp: httpx.Response) -> dict[str, Any]:
        """The action's job (its 202), followed to its end."""
        assert resp.status_code == 202, resp.text
        assert resp.headers["Location"] == f"/v1/jobs/{resp.json()['job_id']}"
        return await self.finished(resp.json()["job_id"])

    async def finished(self, job_id: str) -> dict[str, Any]:
        """The job, followed to its end: it must have succeeded, with the provider's progress
        and the cluster's new status on its event stream."""
        self.ids.append(job_id)
        job = await wait_job(self.client, job_id)
        assert job["status"] == "successful", job
        events = await read_sse(self.client, f"/v1/jobs/{job_id}/events")
        job["messages"] = [e["data"].get("message", "") for e in events]
        assert [e["data"]["type"] for e in events][-2:] == ["resource.status", "job.status"]
        return job


async def _nodes(client: httpx.AsyncClient, cid: str) -> dict[str, dict[str, Any]]:
    page = (await client.get(f"/v1/clusters/{cid}/nodes")).json()
    assert page["total_count"] == len(page["items"])
    return {n["node_id"]: n for n in page["items"]}


async def _cluster(client: httpx.AsyncClient, cid: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"/v1/clusters/{cid}")).json()
    return body


def _same_as_cloud(nodes: dict[str, dict[str, Any]], made: dict[str, dict[str, Any]]) -> None:
    """The API's nodes are the cloud's instances: ids, addresses, status and sizes."""
    assert set(nodes) == set(made)
    for name, inst in made.items():
        node = nodes[name]
        assert (node["role"], node["instance_id"], node["private_ip"], node["status"]) == (
            inst["role"],
            inst["instance_id"],
            inst["private_ip"],
            inst["status"],
        )
        assert (node["cpu"], node["memory"], node["volume_size"]) == (
            inst["cpu"],
            inst["memory"],
            inst["volume_size"],
        )


async def test_a_vm_cluster_goes_through_its_whole_lifecycle(
    client: httpx.AsyncClient, cloud: Cloud, vm: dict[str, Any]
) -> None:
    providers = {p["name"]: p for p in (await client.get("/v1/providers")).json()["items"]}
    assert providers["testcloud"]["cluster_actions"] == [
        "create",
        "stop",
        "start",
        "resize",
        "add_nodes",
        "delete_nodes",
        "delete",
        "recover",
        "cease",
    ]
    zone = vm["runtime"]["zone"]

    # Create: the nodes of the values (a preview lists them), launched in the cloud and
    # found there.
    preview = await client.post(
        "/v1/clusters",
        json={
            "version_id": vm["versions"]["shop@1.0.0"],
            "runtime_id": vm["runtime"]["runtime_id"],
            "name": "preview",
            "values": VALUES,
            "dry_run": True,
        },
    )
    assert preview.status_code == 200, preview.text
    assert [(c["kind"], c["resource"]) for c in preview.json()["changes"]] == [
        ("create", "node web-1"),
        ("create", "node web-2"),
        ("create", "node db-1"),
    ]
    made = await deploy(client, vm, "shop@1.0.0", values=VALUES)
    cid = made["cluster_id"]
    jobs = Jobs(client)
    job = await jobs.finished(made["job_id"])
    assert [t["action"] for t in job["tasks"]] == [
        "render_spec",
        "launch",
        "await_running",
        "survey",
    ]
    assert any(m.startswith("launched web-1 (i-") for m in job["messages"]), job["messages"]
    cluster = await _cluster(client, cid)
    assert (cluster["status"], cluster["transition_status"], cluster["provider"]) == (
        "active",
        "",
        "testcloud",
    )
    assert [(r["role"], r["status"], r["count"]) for r in cluster["roles"]] == [
        ("db", "running", 1),
        ("web", "running", 2),
    ]
    in_cloud = instances(cloud, zone, cid)
    assert sorted(in_cloud) == ["db-1", "web-1", "web-2"]
    assert {i["status"] for i in in_cloud.values()} == {"running"}
    nodes = await _nodes(client, cid)
    _same_as_cloud(nodes, in_cloud)
    assert len({n["private_ip"] for n in nodes.values()}) == 3
    # The release keeps what was rendered: the nodes the values asked for.
    release = (await client.get(f"/v1/clusters/{cid}/releases/1")).json()
    assert [o["name"] for o in release["manifest"]] == ["web-1", "web-2", "db-1"]
    # The provider rebuilds the same from the cloud alone.
    provider = get_provider("testcloud")
    described = await provider.describe_cluster(
        Credential("testcloud", "", credential_of(cloud)), zone, cid, AddressPolicy()
    )
    assert {n["node_id"]: n["instance_id"] for n in described["nodes"]} == {
        k: v["instance_id"] for k, v in nodes.items()
    }

    # Stop, once per Idempotency-Key: the instances stop; the cluster is stopped.
    key = {"Idempotency-Key": f"stop-{cid}"}
    stop = await client.post(f"/v1/clusters/{cid}/actions/stop", headers=key)
    again = await client.post(f"/v1/clusters/{cid}/actions/stop", headers=key)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == stop.json()
    job = await jobs.done(stop)
    assert [t["action"] for t in job["tasks"]] == ["halt", "survey"]
    assert "3 instances stopped" in job["messages"]
    assert (await _cluster(client, cid))["status"] == "stopped"
    assert {i["status"] for i in instances(cloud, zone, cid).values()} == {"stopped"}
    _same_as_cloud(await _nodes(client, cid), instances(cloud, zone, cid))
    assert_error(await client.post(f"/v1/clusters/{cid}/actions/stop"), 409, "cluster_state")

    # Resize while stopped: the db volume grows, the cluster stays stopped.
    job = await jobs.done(
        await client.post(
            f"/v1/clusters/{cid}/actions/resize", json={"role": "db", "volume_size": 100}
        ),
    )
    assert [t["action"] for t in job["tasks"]] == ["reshape", "survey"]
    assert (await _cluster(client, cid))["status"] == "stopped"
    assert instances(cloud, zone, cid)["db-1"]["volume_size"] == 100

    # Start: running again, active.
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/start", json={}))
    assert [t["action"] for t in job["tasks"]] == ["boot", "await_running", "survey"]
    assert (await _cluster(client, cid))["status"] == "active"
    assert {i["status"] for i in instances(cloud, zone, cid).values()} == {"running"}

    # Resize a role while active: its nodes only; the status stays.
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
    assert instances(cloud, zone, cid)["web-1"]["cpu"] == 1  # a preview changes nothing
    await jobs.done(
        await client.post(
            f"/v1/clusters/{cid}/actions/resize", json={"role": "web", "cpu": 2, "memory": 2048}
        ),
    )
    in_cloud = instances(cloud, zone, cid)
    assert [(in_cloud[n]["cpu"], in_cloud[n]["memory"]) for n in ("web-1", "web-2", "db-1")] == [
        (2, 2048),
        (2, 2048),
        (2, 4096),
    ]
    assert (await _cluster(client, cid))["status"] == "active"
    _same_as_cloud(await _nodes(client, cid), in_cloud)

    # Add nodes: made like the role's others, numbered on.
    preview = await client.post(
        f"/v1/clusters/{cid}/actions/add-nodes", json={"role": "web", "count": 2, "dry_run": True}
    )
    assert [(c["kind"], c["resource"]) for c in preview.json()["changes"]] == [
        ("create", "node web-3"),
        ("create", "node web-4"),
    ]
    job = await jobs.done(
        await client.post(
            f"/v1/clusters/{cid}/actions/add-nodes", json={"role": "web", "count": 2}
        ),
    )
    assert "launched web-4" in " ".join(job["messages"])
    in_cloud = instances(cloud, zone, cid)
    assert sorted(in_cloud) == ["db-1", "web-1", "web-2", "web-3", "web-4"]
    assert (in_cloud["web-4"]["cpu"], in_cloud["web-4"]["status"]) == (2, "running")
    _same_as_cloud(await _nodes(client, cid), in_cloud)

    # Delete nodes: those go from the cloud and the list.
    preview = await client.post(
        f"/v1/clusters/{cid}/actions/delete-nodes",
        json={"node_ids": ["web-2", "web-3"], "dry_run": True},
    )
    assert [(c["kind"], c["resource"]) for c in preview.json()["changes"]] == [
        ("delete", "node web-2"),
        ("delete", "node web-3"),
    ]
    await jobs.done(
        await client.post(
            f"/v1/clusters/{cid}/actions/delete-nodes", json={"node_ids": ["web-2", "web-3"]}
        ),
    )
    in_cloud = instances(cloud, zone, cid)
    assert sorted(in_cloud) == ["db-1", "web-1", "web-4"]
    _same_as_cloud(await _nodes(client, cid), in_cloud)
    assert (await _cluster(client, cid))["status"] == "active"

    # Delete: the instances are terminated but kept; recover brings the same ones back.
    kept = {k: v["instance_id"] for k, v in in_cloud.items()}
    await jobs.done(await client.delete(f"/v1/clusters/{cid}"))
    assert (await _cluster(client, cid))["status"] == "deleted"
    assert {i["status"] for i in instances(cloud, zone, cid).values()} == {"terminated"}
    assert {n["status"] for n in (await _nodes(client, cid)).values()} == {"terminated"}
    assert_error(await client.post(f"/v1/clusters/{cid}/actions/start"), 409, "cluster_state")
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/recover"))
    assert [t["action"] for t in job["tasks"]] == ["restore", "await_running", "survey"]
    assert (await _cluster(client, cid))["status"] == "active"
    in_cloud = instances(cloud, zone, cid)
    assert {k: v["instance_id"] for k, v in in_cloud.items()} == kept
    assert {i["status"] for i in in_cloud.values()} == {"running"}

    # Delete again, then cease: nothing is left in the cloud, the record is retired.
    await jobs.done(await client.delete(f"/v1/clusters/{cid}"))
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/cease"))
    assert [t["action"] for t in job["tasks"]] == ["purge", "survey"]
    assert instances(cloud, zone, cid) == {}
    cluster = await _cluster(client, cid)
    assert (cluster["status"], cluster["nodes"], cluster["roles"]) == ("ceased", [], [])
    assert_error(await client.post(f"/v1/clusters/{cid}/actions/recover"), 409, "cluster_state")

    # The cluster's event feed holds every event of its jobs, in order: one status per job.
    expected = []
    for job_id in jobs.ids:
        expected += [e["data"]["id"] for e in await read_sse(client, f"/v1/jobs/{job_id}/events")]
    feed = await read_sse(
        client,
        "/v1/events",
        params={"resource_kind": "cluster", "resource_id": cid, "after": 0},
        max_events=len(expected),
    )
    assert [e["data"]["id"] for e in feed] == expected
    statuses = [e["data"]["status"] for e in feed if e["data"]["type"] == "resource.status"]
    assert statuses == [
        "active",  # create
        "stopped",  # stop
        "stopped",  # resize while stopped
        "active",  # start
        "active",  # resize
        "active",  # add-nodes
        "active",  # delete-nodes
        "deleted",
        "active",  # recover
        "deleted",
        "ceased",
    ]


async def test_node_actions_refuse_what_the_cluster_does_not_have(
    client: httpx.AsyncClient, cloud: Cloud, vm: dict[str, Any]
) -> None:
    made = await deploy(client, vm, "shop@1.0.0", values=VALUES)
    cid = made["cluster_id"]
    await Jobs(client).finished(made["job_id"])
    act = f"/v1/clusters/{cid}/actions"
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        # The body is checked at the edge...
        ("resize", {"role": "web"}, 422, "validation_error"),  # nothing to resize
        ("resize", {"role": "web", "cpu": 0}, 422, "validation_error"),
        ("resize", {"role": "web", "cpu": 2, "disk": 5}, 422, "validation_error"),
        ("add-nodes", {"role": "web", "count": 0}, 422, "validation_error"),
        ("add-nodes", {"count": 1}, 422, "validation_error"),
        ("delete-nodes", {"node_ids": []}, 422, "validation_error"),
        ("delete-nodes", {"node_ids": ["web-1", "web-1"]}, 422, "validation_error"),
        ("stop", {"force": True}, 422, "validation_error"),
        # ... and against the cluster's roles and nodes.
        ("resize", {"role": "cache", "cpu": 2}, 409, "no_such_role"),
        ("add-nodes", {"role": "cache"}, 409, "no_such_role"),
        ("delete-nodes", {"node_ids": ["web-1", "web-9"]}, 409, "no_such_node"),
        ("delete-nodes", {"node_ids": ["web-1", "web-2", "db-1"]}, 409, "last_nodes"),
        # Previews check the same.
        ("resize", {"role": "cache", "cpu": 2, "dry_run": True}, 409, "no_such_role"),
        ("delete-nodes", {"node_ids": ["web-9"], "dry_run": True}, 409, "no_such_node"),
        # The status each action starts from.
        ("start", {}, 409, "cluster_state"),
        ("recover", {}, 409, "cluster_state"),
        ("cease", {}, 409, "cluster_state"),
        # Kubernetes-only actions name the provider.
        ("upgrade", {"version_id": vm["versions"]["shop@2.0.0"]}, 409, "action_unsupported"),
        ("update-env", {"values": {}}, 409, "action_unsupported"),
        # A provider that cannot preview an action says so.
        ("stop", {"dry_run": True}, 409, "preview_unsupported"),
    ]
    for action, body, status, code in cases:
        resp = await client.post(f"{act}/{action}", json=body)
        error = assert_error(resp, status, code)
        if code == "no_such_role":
            assert "cache" in error["message"] and "web" in error["message"], error
        if code == "no_such_node":
            assert error["details"]["node_ids"] == ["web-9"], error
        if code == "action_unsupported":
            assert error["message"].startswith("testcloud clusters do not support"), error
    # Nothing was started, nothing changed in the cloud.
    cluster = await _cluster(client, cid)
    assert (cluster["transition_status"], cluster["job_id"]) == ("", made["job_id"])
    in_cloud = instances(cloud, vm["runtime"]["zone"], cid)
    assert sorted(in_cloud) == ["db-1", "web-1", "web-2"]
    assert in_cloud["web-1"]["cpu"] == 1


async def test_a_vm_cluster_busy_with_one_action_refuses_another(
    client: httpx.AsyncClient, cloud: Cloud, vm: dict[str, Any]
) -> None:
    made = await deploy(client, vm, "shop@1.0.0", values=VALUES)
    cid = made["cluster_id"]
    jobs = Jobs(client)
    await jobs.finished(made["job_id"])
    # The cloud answers nothing while held, so the stop job cannot end before the checks.
    with cloud_held(cloud):
        stop = await client.post(f"/v1/clusters/{cid}/actions/stop")
        assert stop.status_code == 202, stop.text
        assert (await _cluster(client, cid))["transition_status"] == "stopping"
        for action, body in (
            ("resize", {"role": "web", "cpu": 2}),
            ("add-nodes", {"role": "web"}),
            ("delete-nodes", {"node_ids": ["web-1"]}),
            ("resize", {"role": "web", "cpu": 2, "dry_run": True}),
        ):
            busy = await client.post(f"/v1/clusters/{cid}/actions/{action}", json=body)
            error = assert_error(busy, 409, "cluster_busy")
            assert error["details"]["job_id"] == stop.json()["job_id"]
        assert_error(await client.delete(f"/v1/clusters/{cid}"), 409, "cluster_busy")
    await jobs.done(stop)
    cluster = await _cluster(client, cid)
    assert (cluster["status"], cluster["transition_status"]) == ("stopped", "")


async def test_a_failed_vm_action_releases_the_lock_and_keeps_the_status(
    client: httpx.AsyncClient, cloud: Cloud, vm: dict[str, Any]
) -> None:
    made = await deploy(client, vm, "shop@1.0.0", values=VALUES)
    cid = made["cluster_id"]
    await Jobs(client).finished(made["job_id"])
    # A volume cannot shrink: the cloud refuses, the job fails.
    shrink = await client.post(
        f"/v1/clusters/{cid}/actions/resize", json={"role": "db", "volume_size": 10}
    )
    assert shrink.status_code == 202, shrink.text
    job = await wait_job(client, shrink.json()["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "volume_shrink", job["error"]
    cluster = await _cluster(client, cid)
    assert (cluster["status"], cluster["transition_status"]) == ("active", "")
    assert instances(cloud, vm["runtime"]["zone"], cid)["db-1"]["volume_size"] == 50
    # Unlocked: the next action runs.
    resp = await client.post(f"/v1/clusters/{cid}/actions/stop")
    await Jobs(client).done(resp)


async def test_kubernetes_clusters_refuse_the_vm_actions_naming_their_provider(
    client: httpx.AsyncClient, setup: dict[str, Any]
) -> None:
    made = await deploy(client, setup, "shop@1.0.0")
    cid = made["cluster_id"]
    assert (await wait_job(client, made["job_id"]))["status"] == "successful"
    for action, body in (
        ("stop", None),
        ("start", {}),
        ("resize", {"role": "web", "cpu": 2}),
        ("add-nodes", {"role": "web", "count": 1}),
        ("delete-nodes", {"node_ids": ["x"]}),
        ("recover", {"dry_run": True}),
    ):
        resp = await client.post(f"/v1/clusters/{cid}/actions/{action}", json=body)
        error = assert_error(resp, 409, "action_unsupported")
        assert error["message"] == (f"kubernetes clusters do not support {action}"), error
    gone = await client.delete(f"/v1/clusters/{cid}")
    assert (await wait_job(client, gone.json()["job_id"]))["status"] == "successful"


async def test_a_testcloud_credential_is_checked_against_the_cloud(
    client: httpx.AsyncClient, cloud: Cloud
) -> None:
    ok = await client.post(
        "/v1/runtime-credentials/validate",
        json={"provider": "testcloud", "content": credential_of(cloud)},
    )
    assert ok.json()["ok"] is True, ok.text
    assert ok.json()["endpoint_url"] == cloud.path.resolve().as_uri()
    wrong = await client.post(
        "/v1/runtime-credentials/validate",
        json={"provider": "testcloud", "content": credential_of(cloud, secret_key="nope")},
    )
    assert wrong.json()["ok"] is False
    assert wrong.json()["error"]["code"] == "credential_invalid"
