"""The VM cluster lifecycle through the API on a real cloud plugin (aws against moto's server,
qingcloud against the fake QingCloud), one scenario for both: create (previewed, then per-node
progress), stop, resize while stopped, start, resize, add-nodes, delete-nodes, delete, recover,
delete and cease, each checked against the cloud's own instances and volumes. What differs
between the clouds (how they size, image and report, what they run after boot) is the
`VmCloud` each test file gives: its facts and its checks at the steps where clouds differ."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import httpx

from tests.helpers import assert_error
from tests.support.deployments import deploy
from tests.support.vm_scenarios import Jobs, cluster_of, nodes_of, preview_create

ACTIONS = ["create", "stop", "start", "resize", "add_nodes", "delete_nodes", "delete"]
ACTIONS += ["recover", "cease", "refresh"]
CREATE_TASKS = ["render_spec", "check", "launch", "await_running", "attach_volumes", "survey"]
Nodes = dict[str, dict[str, Any]]


class VmCloud(ABC):
    """One cloud as the scenario sees it: its instances (by node id, live ones only, each with
    instance_id, private_ip, status, image_id, userdata, volume_id and volume_size, and cpu
    and memory where the cloud sizes by them), its data volumes, and its own checks."""

    provider: ClassVar[str]
    zone_kind: ClassVar[str]
    # The cpu and memory a web resize asks for.
    resize_to: ClassVar[tuple[int, int]]

    @abstractmethod
    def in_cloud(self, cluster_id: str) -> Nodes: ...

    @abstractmethod
    def volume_ids(self, cluster_id: str) -> list[str]:
        """The cluster's data volumes that are not deleted."""

    @abstractmethod
    def instance_count(self) -> int:
        """How many instances the account has, in any state."""

    @abstractmethod
    def statuses(self, cluster_id: str, instance_ids: set[str]) -> set[str]:
        """The statuses of these instances of the cluster, ended ones too."""

    @abstractmethod
    async def stop_outside(self, instance_id: str) -> None:
        """Stop an instance as its owner would in the cloud's own console: not through us."""

    def same_as_cloud(self, nodes: Nodes, made: Nodes) -> None:
        """The API's nodes are the cloud's instances: ids, addresses, status, sizes."""
        assert set(nodes) == set(made)
        for node_id, inst in made.items():
            node = nodes[node_id]
            assert node["role"] == node_id.rsplit("-", 1)[0]
            assert (node["instance_id"], node["private_ip"], node["status"]) == (
                inst["instance_id"],
                inst["private_ip"],
                inst["status"],
            )
            assert node["volume_size"] == inst["volume_size"]
            if "cpu" in inst:
                assert (node["cpu"], node["memory"]) == (inst["cpu"], inst["memory"])

    @abstractmethod
    def created(self, cluster_id: str, cloud: Nodes, nodes: Nodes) -> None:
        """How the cloud sized, imaged and booted the shop's nodes."""

    @abstractmethod
    def stopped(self, cloud: Nodes, messages: list[str]) -> None:
        """What the stop job's stream says of the cloud's own work."""

    @abstractmethod
    def resized(self, cloud: Nodes, nodes: Nodes, messages: list[str]) -> None:
        """The web nodes, resized to `resize_to` while running."""

    @abstractmethod
    def scaled_out(self, cloud: Nodes, messages: list[str]) -> None:
        """What became of the web role's scale_out on web-1 and web-2 after add-nodes."""

    def deleted(self, cluster_id: str, db_volume: str) -> None:
        """What a delete kept: the db's data volume."""
        assert self.volume_ids(cluster_id) == [db_volume]

    def ceased(self, messages: list[str], db_volume: str) -> None:  # noqa: B027  optional
        """What the cease job's stream says of the volumes it deleted."""


async def lifecycle(client: httpx.AsyncClient, vm: dict[str, Any], cloud_: VmCloud) -> None:
    """Every lifecycle action of the shop package (two web nodes, one db node with a 10 GiB
    volume) on `vm`'s runtime, each job followed to its end and checked against the cloud."""
    providers = {p["name"]: p for p in (await client.get("/v1/providers")).json()["items"]}
    described = providers[cloud_.provider]
    assert described["cluster_actions"] == ACTIONS
    assert described["package_kinds"] == ["vm"]
    assert described["exclusive_zones"] is False
    assert described["zone_kind"] == cloud_.zone_kind

    # Create: previewed as nodes and volumes (making nothing), launched, running, volumes
    # attached.
    preview = await preview_create(client, vm, {})
    assert preview.status_code == 200, preview.text
    assert [(c["kind"], c["resource"]) for c in preview.json()["changes"]] == [
        ("create", "node web-1"),
        ("create", "node web-2"),
        ("create", "node db-1"),
        ("create", "volume db-1/data"),
    ]
    assert cloud_.instance_count() == 0  # a preview makes nothing
    made = await deploy(client, vm, "shop@1.0.0", values={})
    cid = made["cluster_id"]
    jobs = Jobs(client)
    job = await jobs.finished(made["job_id"])
    assert [t["action"] for t in job["tasks"]] == CREATE_TASKS
    messages = job["messages"]
    cloud = cloud_.in_cloud(cid)
    assert sorted(cloud) == ["db-1", "web-1", "web-2"]
    # Progress per node: launched, then running at its address, then its volume.
    for node_id in ("web-1", "web-2", "db-1"):
        inst = cloud[node_id]
        assert f"launched {node_id} ({inst['instance_id']})" in messages, messages
        assert f"{node_id} running at {inst['private_ip']}" in messages, messages
    db_volume = cloud["db-1"]["volume_id"]
    assert f"volume db-1/data ({db_volume}, 10 GiB) attached" in messages, messages
    cluster = await cluster_of(client, cid)
    assert (cluster["status"], cluster["provider"]) == ("active", cloud_.provider)
    assert [(r["role"], r["status"], r["count"]) for r in cluster["roles"]] == [
        ("db", "running", 1),
        ("web", "running", 2),
    ]
    assert {i["status"] for i in cloud.values()} == {"running"}
    # Booted with the role's env and its init then start services.
    script = cloud["web-1"]["userdata"]
    assert script.startswith("#!/bin/sh\n")
    assert "export OP_NODE_ID=web-1\n" in script and "export PORT=8080\n" in script
    assert "export APP=shop\n" in script
    assert script.index("mkdir -p /srv/shop") < script.index("systemctl start shop-web")
    assert "never at boot" not in script  # scale_out runs on the others after add-nodes
    assert (cloud["db-1"]["volume_size"], cloud["web-1"]["volume_id"]) == (10, "")
    nodes = await nodes_of(client, cid)
    cloud_.same_as_cloud(nodes, cloud)
    assert len({n["private_ip"] for n in nodes.values()}) == 3
    cloud_.created(cid, cloud, nodes)
    release = (await client.get(f"/v1/clusters/{cid}/releases/1")).json()
    assert [o["node_id"] for o in release["manifest"]] == ["web-1", "web-2", "db-1"]

    # Stop: every instance stops; the job's stream shows the cloud's work.
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/stop"))
    assert [t["action"] for t in job["tasks"]] == ["services", "stop", "survey"]
    assert "3 instances stopped" in job["messages"]
    cloud_.stopped(cloud, job["messages"])
    assert (await cluster_of(client, cid))["status"] == "stopped"
    assert {i["status"] for i in cloud_.in_cloud(cid).values()} == {"stopped"}
    cloud_.same_as_cloud(await nodes_of(client, cid), cloud_.in_cloud(cid))

    # Resize while stopped: the db volume grows, the same volume; the cluster stays stopped.
    job = await jobs.done(
        await client.post(
            f"/v1/clusters/{cid}/actions/resize", json={"role": "db", "volume_size": 30}
        )
    )
    assert [t["action"] for t in job["tasks"]] == ["resize", "survey"]
    cloud = cloud_.in_cloud(cid)
    assert (cloud["db-1"]["volume_id"], cloud["db-1"]["volume_size"]) == (db_volume, 30)
    assert {i["status"] for i in cloud.values()} == {"stopped"}
    assert (await cluster_of(client, cid))["status"] == "stopped"

    # Start: running again.
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/start", json={}))
    assert [t["action"] for t in job["tasks"]] == ["start", "await_running", "survey"]
    assert (await cluster_of(client, cid))["status"] == "active"
    assert {i["status"] for i in cloud_.in_cloud(cid).values()} == {"running"}

    # Resize a role while active (previewed first): its instances stop, resize, run again.
    cpu, memory = cloud_.resize_to
    preview = await client.post(
        f"/v1/clusters/{cid}/actions/resize",
        json={"role": "web", "cpu": cpu, "memory": memory, "dry_run": True},
    )
    assert preview.status_code == 200, preview.text
    assert [(c["kind"], c["resource"]) for c in preview.json()["changes"]] == [
        ("update", "node web-1"),
        ("update", "node web-2"),
    ]
    before = nodes["web-1"]
    assert preview.json()["changes"][0]["diff"] == [
        {"path": "cpu", "before": before["cpu"], "after": cpu},
        {"path": "memory", "before": before["memory"], "after": memory},
    ]
    job = await jobs.done(
        await client.post(
            f"/v1/clusters/{cid}/actions/resize", json={"role": "web", "cpu": cpu, "memory": memory}
        )
    )
    cloud = cloud_.in_cloud(cid)
    assert [(n, cloud[n]["status"]) for n in sorted(cloud)] == [
        ("db-1", "running"),
        ("web-1", "running"),
        ("web-2", "running"),
    ]
    assert (await cluster_of(client, cid))["status"] == "active"
    nodes = await nodes_of(client, cid)
    cloud_.same_as_cloud(nodes, cloud)
    cloud_.resized(cloud, nodes, job["messages"])

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
    cloud = cloud_.in_cloud(cid)
    assert sorted(cloud) == ["db-1", "web-1", "web-2", "web-3", "web-4"]
    assert cloud["web-4"]["status"] == "running"
    assert f"launched web-4 ({cloud['web-4']['instance_id']})" in job["messages"]
    nodes = await nodes_of(client, cid)
    assert (nodes["web-4"]["cpu"], nodes["web-4"]["memory"]) == (
        nodes["web-1"]["cpu"],
        nodes["web-1"]["memory"],
    )
    cloud_.scaled_out(cloud, job["messages"])
    cloud_.same_as_cloud(nodes, cloud)

    # Delete nodes: their instances are terminated.
    doomed = {cloud[n]["instance_id"] for n in ("web-2", "web-3")}
    await jobs.done(
        await client.post(
            f"/v1/clusters/{cid}/actions/delete-nodes", json={"node_ids": ["web-2", "web-3"]}
        )
    )
    cloud = cloud_.in_cloud(cid)
    assert sorted(cloud) == ["db-1", "web-1", "web-4"]
    assert cloud_.statuses(cid, doomed) == {"terminated"}
    cloud_.same_as_cloud(await nodes_of(client, cid), cloud)

    # Refresh: an instance stopped outside OpenPitrix shows as the cloud has it, the cluster
    # keeps its status and nothing in the cloud changes; a refresh has nothing to preview.
    await cloud_.stop_outside(cloud["web-4"]["instance_id"])
    assert (await nodes_of(client, cid))["web-4"]["status"] == "running"  # as last found
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/refresh"))
    assert [t["action"] for t in job["tasks"]] == ["survey"]
    assert (await cluster_of(client, cid))["status"] == "active"
    cloud = cloud_.in_cloud(cid)
    assert [cloud[n]["status"] for n in ("db-1", "web-1", "web-4")] == [
        "running",
        "running",
        "stopped",
    ]
    cloud_.same_as_cloud(await nodes_of(client, cid), cloud)
    dry = await client.post(f"/v1/clusters/{cid}/actions/refresh", json={"dry_run": True})
    assert_error(dry, 409, "preview_unsupported")

    # Delete: the instances stop and are kept with their volumes; recover starts the same.
    kept = {k: v["instance_id"] for k, v in cloud.items()}
    job = await jobs.done(await client.delete(f"/v1/clusters/{cid}"))
    assert [t["action"] for t in job["tasks"]] == ["services", "stop", "survey"]
    assert (await cluster_of(client, cid))["status"] == "deleted"
    assert {i["status"] for i in cloud_.in_cloud(cid).values()} == {"stopped"}
    cloud_.deleted(cid, db_volume)
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/recover"))
    assert [t["action"] for t in job["tasks"]] == ["start", "await_running", "survey"]
    assert (await cluster_of(client, cid))["status"] == "active"
    cloud = cloud_.in_cloud(cid)
    assert {k: v["instance_id"] for k, v in cloud.items()} == kept
    assert {i["status"] for i in cloud.values()} == {"running"}
    assert cloud["db-1"]["volume_id"] == db_volume

    # Delete again, then cease: every instance terminated, every volume deleted.
    await jobs.done(await client.delete(f"/v1/clusters/{cid}"))
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/cease"))
    assert [t["action"] for t in job["tasks"]] == ["services", "terminate", "survey"]
    cloud_.ceased(job["messages"], db_volume)
    assert cloud_.in_cloud(cid) == {}
    assert cloud_.volume_ids(cid) == []
    cluster = await cluster_of(client, cid)
    assert (cluster["status"], cluster["nodes"], cluster["roles"]) == ("ceased", [], [])
