"""VM clusters on AWS through the API, with real workers and NATS, against moto's EC2 server:
every lifecycle action checked against moto's instances and volumes (read with boto3),
per-node progress on the job's stream, EC2's refusals as the job's error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import wait_job
from tests.support.aws import MotoAws, running_moto
from tests.support.aws_vm import (
    ZONE,
    all_instances,
    ec2,
    in_cloud,
    prepare_aws_runtime,
    ssm,
    volumes_of,
    write_aws_shop_repo,
)
from tests.support.deployments import deploy
from tests.support.http_repo import RepoServer
from tests.support.vm_scenarios import Jobs, cluster_of, nodes_of

ACTIONS = ["create", "stop", "start", "resize", "add_nodes", "delete_nodes", "delete"]
ACTIONS += ["recover", "cease"]


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoAws]:
    with running_moto() as server:
        yield server


@pytest.fixture(scope="module")
def images(moto_server: MotoAws) -> tuple[str, str]:
    """Two x86_64 AMIs moto knows (it loads the same ones after every reset)."""
    answer = ec2(moto_server).describe_images(Owners=["amazon"])
    found = sorted(i["ImageId"] for i in answer["Images"] if i["Architecture"] == "x86_64")
    return found[0], found[1]


@pytest.fixture
def moto(moto_server: MotoAws) -> MotoAws:
    moto_server.reset()
    return moto_server


@pytest.fixture
def vm_repo(repo_dir: Path, repo_server: RepoServer, images: tuple[str, str]) -> RepoServer:
    write_aws_shop_repo(repo_dir, images[0])
    return repo_server


@pytest.fixture
async def vm(
    client: httpx.AsyncClient, moto: MotoAws, vm_repo: RepoServer, images: tuple[str, str]
) -> dict[str, Any]:
    return await prepare_aws_runtime(client, moto, vm_repo.url, images[1])


def same_as_cloud(nodes: dict[str, dict[str, Any]], made: dict[str, dict[str, Any]]) -> None:
    """The API's nodes are moto's instances: ids, addresses, status, data volume sizes."""
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


async def test_an_aws_vm_cluster_goes_through_its_whole_lifecycle(
    client: httpx.AsyncClient, moto: MotoAws, vm: dict[str, Any], images: tuple[str, str]
) -> None:
    providers = {p["name"]: p for p in (await client.get("/v1/providers")).json()["items"]}
    assert providers["aws"]["cluster_actions"] == ACTIONS
    assert providers["aws"]["package_kinds"] == ["vm"]
    assert providers["aws"]["exclusive_zones"] is False
    assert providers["aws"]["zone_kind"] == "availability zone"

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
    cloud = in_cloud(moto, cid)
    assert sorted(cloud) == ["db-1", "web-1", "web-2"]
    # Progress per node: launched, then running at its address, then its volume.
    for node_id in ("web-1", "web-2", "db-1"):
        inst = cloud[node_id]
        assert f"launched {node_id} ({inst['instance_id']})" in messages, messages
        assert f"{node_id} running at {inst['private_ip']}" in messages, messages
    db_volume = cloud["db-1"]["volume_id"]
    assert db_volume.startswith("vol-")
    assert f"volume db-1/data ({db_volume}, 10 GiB) attached" in messages, messages
    cluster = await cluster_of(client, cid)
    assert (cluster["status"], cluster["provider"]) == ("active", "aws")
    assert [(r["role"], r["status"], r["count"]) for r in cluster["roles"]] == [
        ("db", "running", 1),
        ("web", "running", 2),
    ]
    # Sized by the table, imaged as the package and the credential say, tagged, booted with
    # the role's env and its init then start services.
    assert {i["status"] for i in cloud.values()} == {"running"}
    assert {i["zone"] for i in cloud.values()} == {ZONE}
    assert (cloud["web-1"]["instance_type"], cloud["db-1"]["instance_type"]) == (
        "t3.micro",
        "t3.medium",
    )
    assert (cloud["web-1"]["image_id"], cloud["db-1"]["image_id"]) == images
    tags = cloud["web-2"]["tags"]
    assert (tags["openpitrix:cluster-id"], tags["openpitrix:role"]) == (cid, "web")
    assert (tags["openpitrix:node-id"], tags["Name"]) == ("web-2", f"{cid}-web-2")
    script = cloud["web-1"]["userdata"]
    assert script.startswith("#!/bin/sh\n")
    assert "export OP_NODE_ID=web-1\n" in script and "export PORT=8080\n" in script
    assert script.index("mkdir -p /srv/shop") < script.index("systemctl start shop-web")
    assert (cloud["db-1"]["volume_size"], cloud["web-1"]["volume_id"]) == (10, "")
    nodes = await nodes_of(client, cid)
    same_as_cloud(nodes, cloud)
    assert (nodes["web-1"]["cpu"], nodes["web-1"]["memory"]) == (2, 1024)  # t3.micro's
    assert len({n["private_ip"] for n in nodes.values()}) == 3

    # Stop: every instance stops; the job's stream shows EC2's state changes.
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/stop"))
    assert [t["action"] for t in job["tasks"]] == ["services", "stop", "survey"]
    assert "3 instances stopped" in job["messages"]
    web1 = cloud["web-1"]["instance_id"]
    assert f"EC2 StopInstances {web1}: running -> stopping" in job["messages"], job["messages"]
    assert f"EC2 instance {web1} stopped" in job["messages"]
    assert (await cluster_of(client, cid))["status"] == "stopped"
    assert {i["status"] for i in in_cloud(moto, cid).values()} == {"stopped"}
    same_as_cloud(await nodes_of(client, cid), in_cloud(moto, cid))

    # Resize while stopped: the db volume grows in place (ModifyVolume), the cluster stays
    # stopped.
    await jobs.done(
        await client.post(
            f"/v1/clusters/{cid}/actions/resize", json={"role": "db", "volume_size": 30}
        )
    )
    cloud = in_cloud(moto, cid)
    assert (cloud["db-1"]["volume_id"], cloud["db-1"]["volume_size"]) == (db_volume, 30)
    assert {i["status"] for i in cloud.values()} == {"stopped"}
    assert (await cluster_of(client, cid))["status"] == "stopped"

    # Start: running again.
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/start", json={}))
    assert [t["action"] for t in job["tasks"]] == ["start", "await_running", "survey"]
    assert (await cluster_of(client, cid))["status"] == "active"
    assert {i["status"] for i in in_cloud(moto, cid).values()} == {"running"}

    # Resize a role while active: its instances stop, change type, and run again.
    job = await jobs.done(
        await client.post(
            f"/v1/clusters/{cid}/actions/resize", json={"role": "web", "cpu": 4, "memory": 8192}
        )
    )
    assert f"web: EC2 instance {web1}: t3.micro -> t3.xlarge" in job["messages"], job["messages"]
    cloud = in_cloud(moto, cid)
    assert [(n, cloud[n]["instance_type"], cloud[n]["status"]) for n in sorted(cloud)] == [
        ("db-1", "t3.medium", "running"),
        ("web-1", "t3.xlarge", "running"),
        ("web-2", "t3.xlarge", "running"),
    ]
    assert (await cluster_of(client, cid))["status"] == "active"
    nodes = await nodes_of(client, cid)
    same_as_cloud(nodes, cloud)
    assert (nodes["web-2"]["cpu"], nodes["web-2"]["memory"]) == (4, 16384)

    # Add nodes: made like the role's others (resized since), numbered on.
    job = await jobs.done(
        await client.post(f"/v1/clusters/{cid}/actions/add-nodes", json={"role": "web", "count": 2})
    )
    cloud = in_cloud(moto, cid)
    assert sorted(cloud) == ["db-1", "web-1", "web-2", "web-3", "web-4"]
    assert (cloud["web-4"]["instance_type"], cloud["web-4"]["status"]) == ("t3.xlarge", "running")
    assert f"launched web-4 ({cloud['web-4']['instance_id']})" in job["messages"]
    # Then the web role's scale_out ran through SSM on the role's other nodes, web-1 and web-2
    # (moto's command lists every instance of the region besides those it was sent to).
    assert "ran scale_out of web on web-1, web-2 through SSM" in job["messages"], job["messages"]
    commands = ssm(moto).list_commands()["Commands"]
    assert len(commands) == 1, commands
    others = {cloud[n]["instance_id"] for n in ("web-1", "web-2")}
    assert others <= set(commands[0]["InstanceIds"])
    assert commands[0]["DocumentName"] == "AWS-RunShellScript"
    script = commands[0]["Parameters"]["commands"][0]
    assert script.endswith("\necho never at boot\n"), script
    command_id = commands[0]["CommandId"]
    assert f"web scale_out: SSM command {command_id} succeeded on 2 instances" in job["messages"]
    same_as_cloud(await nodes_of(client, cid), cloud)

    # Delete nodes: their instances are terminated.
    doomed = {cloud[n]["instance_id"] for n in ("web-2", "web-3")}
    await jobs.done(
        await client.post(
            f"/v1/clusters/{cid}/actions/delete-nodes", json={"node_ids": ["web-2", "web-3"]}
        )
    )
    cloud = in_cloud(moto, cid)
    assert sorted(cloud) == ["db-1", "web-1", "web-4"]
    ended = {i["InstanceId"]: i["State"]["Name"] for i in all_instances(moto, cid)}
    assert {ended[i] for i in doomed} == {"terminated"}
    same_as_cloud(await nodes_of(client, cid), cloud)

    # Delete: the instances stop and are kept with their volumes; recover starts the same.
    kept = {k: v["instance_id"] for k, v in cloud.items()}
    job = await jobs.done(await client.delete(f"/v1/clusters/{cid}"))
    assert [t["action"] for t in job["tasks"]] == ["services", "stop", "survey"]
    assert (await cluster_of(client, cid))["status"] == "deleted"
    assert {i["status"] for i in in_cloud(moto, cid).values()} == {"stopped"}
    assert list(volumes_of(moto, cid)) == [db_volume]
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/recover"))
    assert [t["action"] for t in job["tasks"]] == ["start", "await_running", "survey"]
    assert (await cluster_of(client, cid))["status"] == "active"
    cloud = in_cloud(moto, cid)
    assert {k: v["instance_id"] for k, v in cloud.items()} == kept
    assert {i["status"] for i in cloud.values()} == {"running"}
    assert cloud["db-1"]["volume_id"] == db_volume

    # Delete again, then cease: every instance terminated, the data volume deleted.
    await jobs.done(await client.delete(f"/v1/clusters/{cid}"))
    job = await jobs.done(await client.post(f"/v1/clusters/{cid}/actions/cease"))
    assert [t["action"] for t in job["tasks"]] == ["services", "terminate", "survey"]
    assert f"EBS volume {db_volume} deleted" in job["messages"], job["messages"]
    assert in_cloud(moto, cid) == {}
    assert volumes_of(moto, cid) == {}
    cluster = await cluster_of(client, cid)
    assert (cluster["status"], cluster["nodes"], cluster["roles"]) == ("ceased", [], [])


async def test_an_unknown_ami_is_the_jobs_error(
    client: httpx.AsyncClient, moto: MotoAws, vm_repo: RepoServer
) -> None:
    # The credential's default image (the db role's) does not exist: EC2 refuses the launch.
    vm = await prepare_aws_runtime(client, moto, vm_repo.url, "ami-0000000000000000d")
    made = await deploy(client, vm, "shop@1.0.0", values={})
    job = await wait_job(client, made["job_id"])
    assert job["status"] == "failed"
    assert "InvalidAMIID.NotFound" in job["error"]["message"], job["error"]
    assert "RunInstances" in job["error"]["message"], job["error"]
    assert [t["action"] for t in job["tasks"] if t["status"] == "failed"] == ["launch"]
    cluster = await cluster_of(client, made["cluster_id"])
    assert cluster["transition_status"] == "", cluster


async def test_a_region_too_full_fails_the_create_before_anything_is_made(
    client: httpx.AsyncClient, moto: MotoAws, vm: dict[str, Any], images: tuple[str, str]
) -> None:
    # moto has no EC2 vCPU quota: the limit is its max-instances attribute, 20. 18 run.
    ec2(moto).run_instances(ImageId=images[0], MinCount=18, MaxCount=18, InstanceType="t3.micro")
    made = await deploy(client, vm, "shop@1.0.0", values={})
    job = await wait_job(client, made["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "insufficient_resources", job["error"]
    assert (
        "3 instances of on-demand standard instances needed, 2 left" in (job["error"]["message"])
    ), job["error"]
    assert [t["action"] for t in job["tasks"] if t["status"] == "failed"] == ["check"]
    assert in_cloud(moto, made["cluster_id"]) == {}
