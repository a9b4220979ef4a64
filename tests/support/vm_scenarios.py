"""The VM cluster lifecycle through the API on the test cloud (the provider plugin of
tests/support/testcloud), shared by the in-process tests (tests/clusters) and the end-to-end
ones through real processes (tests/e2e): each job's end, its events, and the cloud's instances
against the nodes the API lists."""

from __future__ import annotations

from typing import Any

import httpx
from openpitrix_testcloud.cloud import Cloud

from openpitrix.netguard import AddressPolicy
from openpitrix.providers.base import Credential
from openpitrix.providers.registry import load_providers
from tests.helpers import assert_error, read_sse, wait_job
from tests.support.deployments import deploy
from tests.support.vm import credential_of, instances

VALUES = {
    "roles": {
        "web": {"count": 2, "cpu": 1, "memory": 1024},
        "db": {"count": 1, "cpu": 2, "memory": 4096, "volume_size": 50},
    }
}


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


async def preview_create(
    client: httpx.AsyncClient, vm: dict[str, Any], values: dict[str, Any]
) -> httpx.Response:
    """A dry-run create of the shop 1.0.0 on `vm`'s runtime: what it would make."""
    return await client.post(
        "/v1/clusters",
        json={
            "version_id": vm["versions"]["shop@1.0.0"],
            "runtime_id": vm["runtime"]["runtime_id"],
            "name": "preview",
            "values": values,
            "dry_run": True,
        },
    )


async def nodes_of(client: httpx.AsyncClient, cid: str) -> dict[str, dict[str, Any]]:
    page = (await client.get(f"/v1/clusters/{cid}/nodes")).json()
    assert page["total_count"] == len(page["items"])
    return {n["node_id"]: n for n in page["items"]}


async def cluster_of(client: httpx.AsyncClient, cid: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"/v1/clusters/{cid}")).json()
    return body


def same_as_cloud(nodes: dict[str, dict[str, Any]], made: dict[str, dict[str, Any]]) -> None:
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


async def lifecycle(client: httpx.AsyncClient, cloud: Cloud, vm: dict[str, Any]) -> None:
    """Create, stop, resize while stopped, start, resize, add-nodes, delete-nodes, delete,
    recover, delete and cease, each checked against the cloud."""
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
    preview = await preview_create(client, vm, VALUES)
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
    cluster = await cluster_of(client, cid)
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
    nodes = await nodes_of(client, cid)
    same_as_cloud(nodes, in_cloud)
    assert len({n["private_ip"] for n in nodes.values()}) == 3
    # The release keeps what was rendered: the nodes the values asked for.
    release = (await client.get(f"/v1/clusters/{cid}/releases/1")).json()
    assert [o["name"] for o in release["manifest"]] == ["web-1", "web-2", "db-1"]
    # The provider rebuilds the same from the cloud alone.
    provider = load_providers()["testcloud"]
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
    assert (await cluster_of(client, cid))["status"] == "stopped"
    assert {i["status"] for i in instances(cloud, zone, cid).values()} == {"stopped"}
    same_as_cloud(await nodes_of(client, cid), instances(cloud, zone, cid))
    assert_error(await client.post(f"/v1/clusters/{cid}/actions/stop"), 409, "cluster_state")

    # Resize while stopped: the db volume grows, the cluster stays stopped.
    job = await jobs.done(
        await client.post(
            f"/v1/clusters/{cid}/actions/resize", json={"role": "db", "volume_size": 100}
        ),
    )
    assert [t["action"] for t in job["tasks"]] == ["reshape", "survey"]
    assert (await cluster_of(client, cid))["status"] == "stopped"
    assert instances(cloud, zone, cid)["db-1"]["volume_size"] == 100

    # Start: running again, active.
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/start", json={}))
    assert [t["action"] for t in job["tasks"]] == ["boot", "await_running", "survey"]
    assert (await cluster_of(client, cid))["status"] == "active"
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
    assert (await cluster_of(client, cid))["status"] == "active"
    same_as_cloud(await nodes_of(client, cid), in_cloud)

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
    same_as_cloud(await nodes_of(client, cid), in_cloud)

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
    same_as_cloud(await nodes_of(client, cid), in_cloud)
    assert (await cluster_of(client, cid))["status"] == "active"

    # Delete: the instances are terminated but kept; recover brings the same ones back.
    kept = {k: v["instance_id"] for k, v in in_cloud.items()}
    await jobs.done(await client.delete(f"/v1/clusters/{cid}"))
    assert (await cluster_of(client, cid))["status"] == "deleted"
    assert {i["status"] for i in instances(cloud, zone, cid).values()} == {"terminated"}
    assert {n["status"] for n in (await nodes_of(client, cid)).values()} == {"terminated"}
    assert_error(await client.post(f"/v1/clusters/{cid}/actions/start"), 409, "cluster_state")
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/recover"))
    assert [t["action"] for t in job["tasks"]] == ["restore", "await_running", "survey"]
    assert (await cluster_of(client, cid))["status"] == "active"
    in_cloud = instances(cloud, zone, cid)
    assert {k: v["instance_id"] for k, v in in_cloud.items()} == kept
    assert {i["status"] for i in in_cloud.values()} == {"running"}

    # Delete again, then cease: nothing is left in the cloud, the record is retired.
    await jobs.done(await client.delete(f"/v1/clusters/{cid}"))
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/cease"))
    assert [t["action"] for t in job["tasks"]] == ["purge", "survey"]
    assert instances(cloud, zone, cid) == {}
    cluster = await cluster_of(client, cid)
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
